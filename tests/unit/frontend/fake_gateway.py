"""An in-memory gateway speaking the `/api/v1` contract, for the frontend's component tests.

Streamlit's AppTest runs the page script in this process, so a test sets `CURRENT` and the
script's client talks to it through httpx's MockTransport. The browser tests run the same
pages against the real stack.

Every answer is checked against the real gateway's routes: a success against the response
model (and media type) of the route it fakes, an error against the error envelope. An
answer the gateway could not give raises `ContractDrift` (and is kept in `drift`, for the
pages that show a failure instead of raising it), so the fake cannot drift from the API.
"""

import csv
import io
import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import streamlit as st
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from frontend.utils.gateway_client import GatewayClient
from gateway.main import FEATURE_ROUTERS
from gateway.models.schemas import ModelVersion
from gateway.plumbing.errors import ErrorEnvelope
from tests.support.images import png_bytes

PASSWORD = "copper meadow lantern 58"
CURRENT: "FakeGateway | None" = None
CAVEAT = "This model assists and does not diagnose: a pathologist's reading decides."
# Checks as the inference service reports them (`ml.assessment.Check.as_dict()`).
TISSUE_PASSED = {
    "measure": "tissue_fraction",
    "value": 0.82,
    "limit": 0.2,
    "comparison": "at_least",
    "reason": "no_tissue",
    "passed": True,
}
NO_TISSUE = TISSUE_PASSED | {"value": 0.02, "passed": False}
NEAR_THRESHOLD = {
    "measure": "distance_from_threshold",
    "value": 0.02,
    "limit": 0.05,
    "comparison": "at_least",
    "reason": "near_threshold",
    "passed": False,
}
OUT_OF_DISTRIBUTION = {
    "measure": "out_of_distribution_score",
    "value": 41.26,
    "limit": 25.0,
    "comparison": "at_most",
    "reason": "out_of_distribution",
    "passed": False,
}
OUT_OF_FOCUS = {
    "measure": "focus",
    "value": 3.1,
    "limit": 10.0,
    "comparison": "at_least",
    "reason": "out_of_focus",
    "passed": False,
}
GATEWAY_ROUTES = [
    route for router in FEATURE_ROUTERS for route in router.routes if isinstance(route, APIRoute)
]


class ContractDrift(AssertionError):
    """The fake answered what the real gateway could not."""


def gateway_route(method: str, path: str) -> APIRoute | None:
    return next(
        (r for r in GATEWAY_ROUTES if method in r.methods and r.path_regex.match(path)), None
    )


def query_parameters(route: APIRoute) -> set[str]:
    """The query parameters the route and its dependencies declare."""
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names |= {param.alias for param in dependant.query_params}
        pending += dependant.dependencies
    return names


def contract_problem(request: httpx.Request, response: httpx.Response) -> str | None:
    """Why the real gateway could not give `response` to `request`, or None when it could."""
    method, path, status = request.method, request.url.path, response.status_code
    if path == "/ready":
        return None  # the readiness answer of every service (common/health.py), no feature's
    route = gateway_route(method, path)
    if status >= 400 and route is None:
        model: Any = ErrorEnvelope
    elif route is None:
        return f"{method} {path} answered {status}, but the gateway has no such route"
    elif unknown := set(request.url.params) - query_parameters(route):
        return f"{method} {route.path} was sent query parameters it does not take: {unknown}"
    elif status not in {route.status_code or 200, *route.responses}:
        return f"{method} {route.path} answered {status}, which the gateway does not document"
    elif status >= 400:
        model = ErrorEnvelope
    else:
        documented = route.responses.get(status, {})
        media_types = documented.get("content")
        media_type = response.headers.get("content-type", "").split(";")[0]
        if media_types and media_type not in media_types:
            return f"{method} {route.path} answered {media_type}, not one of {list(media_types)}"
        model = documented.get("model", route.response_model)
    if model is None or status == 204:
        return None
    try:
        TypeAdapter(model).validate_json(response.content)
    except ValidationError as exc:
        return f"{method} {path} answered {status} with what the gateway's model refuses: {exc}"
    return None


def envelope(status: int, code: str, message: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "request_id": uuid.uuid4().hex}}
    return httpx.Response(status, json=body)


# What training records on a card about assessability; older cards have none of it.
ASSESSABILITY_CARD = {
    "calibration": {
        "method": "temperature",
        "temperature": 1.734,
        "ece_before": 0.0812,
        "ece_after": 0.0231,
        "bins": 15,
        "chosen_on": "validation",
    },
    "indeterminate_band": {
        "half_width": 0.08,
        "chosen_on": "validation",
        "rule": "The narrowest band outside which the validation error rate is below 5 %.",
        "error_rate_inside": 0.31,
        "error_rate_outside": 0.04,
    },
    "out_of_distribution": {
        "method": "mahalanobis",
        "layer": "penultimate",
        "threshold": 25.0,
        "chosen_on": "validation",
        "quantile": 0.99,
        "file": "ood.npz",
    },
}


def model_detail(version: str, status: str, card: dict[str, Any] | None = None) -> dict[str, Any]:
    at = {
        "threshold": 0.3,
        "roc_auc": 0.95,
        "sensitivity": 0.9,
        "specificity": 0.8,
        "precision": 0.7,
        "accuracy": 0.84,
        "f1": 0.79,
        "brier_score": 0.08,
        "confusion_matrix": {
            "labels": ["benign", "malignant"],
            "rows_true_columns_predicted": [[80, 20], [5, 45]],
        },
    }
    return {
        "version": version,
        "status": status,
        "classes": ["benign", "malignant"],
        "input_shape": [64, 64, 3],
        "metrics": {k: v for k, v in at.items() if k != "confusion_matrix"} | {"images": 150},
        "checksum_sha256": "0" * 64,
        "created_by": "system",
        "created_at": "2026-11-20T10:00:00+00:00",
        "activated_by": "system" if status == "active" else None,
        "activated_at": "2026-11-20T10:00:00+00:00" if status == "active" else None,
        "path": version,
        "card": {
            "version": version,
            "created_at": "2026-11-20T10:00:00+00:00",
            "architecture": "3-block CNN",
            "input": {"size": [64, 64, 3]},
            "preprocessing": {"steps": ["decode to RGB", "resize to 64x64", "scale to [0, 1]"]},
            "decision_threshold": 0.3,
            "threshold_rule": {"target": 0.95, "metric": "sensitivity", "chosen_on": "validation"},
            "training_data": {
                "synthetic": True,
                "images": 1000,
                "splits": {"train": {"patients": 30}, "test": {"patients": 10}},
            },
            "intended_use": "Research and demonstration.",
            **(card or {}),
        },
        "reports": {
            "evaluation": {
                "at_threshold": at,
                "at_0_5": at | {"threshold": 0.5, "sensitivity": 0.8},
                "roc_curve": {
                    "false_positive_rate": [0.0, 0.1, 0.2, 1.0],
                    "true_positive_rate": [0.0, 0.7, 0.9, 1.0],
                    "thresholds": [1.0, 0.6, 0.3, 0.0],
                },
            },
            "exploration": {
                "images": 1000,
                "patients": 40,
                "classes": {"benign": 640, "malignant": 360},
                "malignant_share": 0.36,
                "sampled_for_pixels": 1000,
                "unreadable_in_sample": 0,
                "image_sizes": {"64x64": 990, "50x50": 10},
                "channels": {
                    "names": ["red", "green", "blue"],
                    "mean": [0.9, 0.7, 0.8],
                    "std": [0.1, 0.1, 0.1],
                    "mean_by_class": {"benign": [0.91, 0.72, 0.83], "malignant": [0.87, 0.69, 0.8]},
                },
                "images_per_patient": {
                    "min": 20,
                    "median": 25,
                    "max": 30,
                    "patients_by_count": {"20": 10, "25": 20, "30": 10},
                },
            },
            "preprocessing": {
                "files_seen": 1003,
                "files_kept": 1000,
                "skipped": [{"path": "p7/1/broken.png", "reason": "cannot identify image file"}],
                "duplicates_removed": [],
                "splits": {
                    "train": {
                        "images": 700,
                        "patients": 28,
                        "classes": {"benign": 450, "malignant": 250},
                    },
                    "test": {
                        "images": 300,
                        "patients": 12,
                        "classes": {"benign": 190, "malignant": 110},
                    },
                },
                "balance": {"strategy": "class_weights"},
            },
        },
        "figures": ["exploration/samples.png"],
    }


class FakeGateway:
    def __init__(self) -> None:
        now = datetime.now(UTC).isoformat()
        self.users: dict[str, dict[str, Any]] = {}
        for role in ("admin", "clinician", "viewer"):
            self.add_user(f"{role}@example.com", role, now)
        self.access: dict[str, str] = {}  # token -> email
        self.refresh_tokens: dict[str, str] = {}
        self.access_lifetime_s = 900
        self.patients: list[dict[str, Any]] = []
        self.predictions: list[dict[str, Any]] = []
        self.reviews: list[dict[str, Any]] = []
        self.idempotency: dict[str, dict[str, Any]] = {}
        self.models = {
            "v1": model_detail("v1", "active", ASSESSABILITY_CARD),
            "v2": model_detail("v2", "registered"),  # an older card: no calibration
        }
        self.down: set[str] = set()  # path prefixes answering 503
        self.not_ready: set[str] = set()  # services the gateway's /ready says are down
        self.requests: list[httpx.Request] = []
        # What the assistant answers with: who answers, whether that replaced a language
        # model's answer (and why), a fixed text instead of the built one, a rate limit.
        self.assistant = {"provider": "offline", "model": "templates"}
        self.assistant_replaced: tuple[str, str] | None = None  # (attempted provider, reason)
        self.assistant_text: str | None = None
        self.assistant_retry_after_s: int | None = None
        self.slides: list[dict[str, Any]] = []
        self.view_links: list[dict[str, Any]] = []  # grants handed out, newest last
        self.drift: list[str] = []  # answers the real gateway could not give (ContractDrift)
        # How the next uploads come out: add_prediction's keyword arguments.
        self.outcome: dict[str, Any] = {}

    # -- set-up helpers ---------------------------------------------------------------------

    def add_user(self, email: str, role: str, now: str | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC).isoformat()
        user = {
            "id": str(uuid.uuid4()),
            "email": email,
            "full_name": f"Dr {role.title()}",
            "role": role,
            "is_active": True,
            "created_at": now,
            "updated_at": now,
            "last_login_at": None,
        }
        self.users[email] = {"user": user, "password": PASSWORD}
        return user

    def add_prediction(
        self,
        label: str | None = "malignant",
        p: float = 0.9,
        patient_id=None,
        assessment: str | None = "assessable",
        checks: list[dict[str, Any]] | None = None,
    ) -> dict:
        """A stored prediction: `p` is the calibrated P(malignant); `label` None with
        assessment not_assessable, and `assessment` None for one stored before images were
        checked (an old row, "not recorded")."""
        checks = [TISSUE_PASSED] if checks is None else checks
        reasons = list(dict.fromkeys(c["reason"] for c in checks if not c["passed"]))
        probability = None if label is None else p if label == "malignant" else 1 - p
        prediction = {
            "id": str(uuid.uuid4()),
            "image_id": str(uuid.uuid4()),
            "patient_id": patient_id,
            "model_version": "v1",
            "assessment": assessment,
            "reasons": None if assessment is None else reasons,
            "checks": None if assessment is None else checks,
            "label": label,
            "probability": probability,
            "probabilities": {"benign": round(1 - p, 4), "malignant": p},
            "threshold": 0.3,
            "latency_ms": 12.5,
            "heatmap_ref": str(uuid.uuid4()),
            "heatmap_focus": {
                "region": "centre",
                "peak_region": "upper left",
                "hot_area_fraction": 0.18,
                "spread": "focal",
            },
            "requested_by": self.users["clinician@example.com"]["user"]["id"],
            "created_at": datetime.now(UTC).isoformat(),
            "reviewed": False,
        }
        self.predictions.insert(0, prediction)
        return prediction

    def add_patient(self, reference: str) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        patient = {
            "id": str(uuid.uuid4()),
            "external_ref": reference,
            "birth_year": None,
            "sex": "unknown",
            "notes": None,
            "created_by": None,
            "created_at": now,
            "updated_at": now,
        }
        self.patients.append(patient)
        return patient

    def add_slide(
        self,
        patient_id: str,
        filename: str = "CMU-1-Small-Region.svs",
        mpp: float | None = 0.499,
        objective_power: float | None = 20,
    ) -> dict[str, Any]:
        """A stored slide, shaped like the real SVS region (2220x2967 px, 20x, 0.499 µm/px)."""
        slide = {
            "id": str(uuid.uuid4()),
            "patient_id": patient_id,
            "filename": filename,
            "format": "aperio",
            "width": 2220,
            "height": 2967,
            "level_count": 1,
            "levels": [{"width": 2220, "height": 2967, "downsample": 1.0}],
            "microns_per_pixel_x": mpp,
            "microns_per_pixel_y": mpp,
            "resolution_source": "file" if mpp is not None else "unknown",
            "objective_power": objective_power,
            "associated_images": ["label", "macro", "thumbnail"],
            "size_bytes": 1_938_264,
            "sha256": "0" * 64,
            "uploaded_by": self.users["clinician@example.com"]["user"]["id"],
            "created_at": datetime.now(UTC).isoformat(),
        }
        self.slides.insert(0, slide)
        return slide

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def client(self, store) -> GatewayClient:
        return GatewayClient(
            "http://gateway.test", transport=httpx.MockTransport(self.handle), store=store
        )

    # -- the contract -----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.answer(request)
        problem = contract_problem(request, response)
        if problem is not None:
            self.drift.append(problem)
            raise ContractDrift(problem)
        return response

    def answer(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if any(path.startswith(prefix) for prefix in self.down):
            return envelope(503, "service_unavailable", "The data service is unavailable.")
        if path == "/ready":
            return self.ready()
        if path == "/api/v1/auth/token":
            return self.login(dict(httpx.QueryParams(request.content.decode())))
        if path == "/api/v1/auth/refresh":
            return self.refresh(json.loads(request.content)["refresh_token"])
        email = self.access.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        if email is None:
            return envelope(401, "invalid_token", "The access token has expired.")
        caller = self.users[email]["user"]
        routes = [
            ("POST", r"/api/v1/auth/logout", self.logout),
            ("GET", r"/api/v1/auth/me", lambda r, c: httpx.Response(200, json=c)),
            ("GET", r"/api/v1/patients", self.list_patients),
            ("POST", r"/api/v1/patients", self.create_patient),
            ("POST", r"/api/v1/predictions", self.predict),
            ("GET", r"/api/v1/predictions", self.list_predictions),
            ("GET", r"/api/v1/predictions/(?P<id>[^/]+)", self.get_prediction),
            ("GET", r"/api/v1/predictions/(?P<id>[^/]+)/(image|heatmap)", self.image),
            ("POST", r"/api/v1/predictions/(?P<id>[^/]+)/review", self.review),
            ("GET", r"/api/v1/predictions/(?P<id>[^/]+)/reviews", self.list_reviews),
            ("POST", r"/api/v1/predictions/(?P<id>[^/]+)/explain", self.explain),
            ("GET", r"/api/v1/stats", self.stats),
            ("GET", r"/api/v1/analyses/stats", self.analysis_stats),
            ("GET", r"/api/v1/exports/labels", self.export),
            ("GET", r"/api/v1/models", self.list_models),
            ("GET", r"/api/v1/models/(?P<v>[^/]+)", self.model),
            ("GET", r"/api/v1/models/(?P<v>[^/]+)/figures/.+", self.image),
            ("POST", r"/api/v1/models/(?P<v>[^/]+)/activate", self.activate),
            ("GET", r"/api/v1/slides", self.list_slides),
            ("GET", r"/api/v1/slides/(?P<id>[^/]+)", self.get_slide),
            ("GET", r"/api/v1/slides/(?P<id>[^/]+)/thumbnail", self.slide_thumbnail),
            ("POST", r"/api/v1/slides/(?P<id>[^/]+)/view-links", self.view_link),
            ("GET", r"/api/v1/admin/users", self.list_users),
            ("POST", r"/api/v1/admin/users", self.create_user),
            ("PATCH", r"/api/v1/admin/users/(?P<id>[^/]+)", self.update_user),
        ]
        for route_method, pattern, answer in routes:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                request.extensions["match"] = match
                return answer(request, caller)
        return envelope(404, "not_found", f"No route {method} {path}.")

    def ready(self) -> httpx.Response:
        """The gateway's public shape (common/health.py): a status and latency per service,
        never the reason, which only the gateway's log holds."""
        checks = {
            name: {"status": "down"}
            if name in self.not_ready
            else {"status": "up", "latency_ms": 1.5}
            for name in ("auth", "inference", "data")
        }
        if not self.not_ready:
            return httpx.Response(200, json={"status": "ready", "checks": checks})
        reasons = "; ".join(f"{name}: down" for name in sorted(self.not_ready))
        error = {"code": "not_ready", "message": f"Not ready: {reasons}", "request_id": "r"}
        return httpx.Response(503, json={"status": "not_ready", "checks": checks, "error": error})

    def issue(self, email: str) -> httpx.Response:
        access, refresh = uuid.uuid4().hex, uuid.uuid4().hex
        self.access[access] = email
        self.refresh_tokens[refresh] = email
        body = {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": self.access_lifetime_s,
            "refresh_expires_in": 604800,
        }
        return httpx.Response(200, json=body)

    def login(self, form: dict[str, str]) -> httpx.Response:
        account = self.users.get(form.get("username", ""))
        if account is None or account["password"] != form.get("password"):
            return envelope(401, "invalid_credentials", "Incorrect email or password.")
        return self.issue(form["username"])

    def refresh(self, token: str) -> httpx.Response:
        email = self.refresh_tokens.pop(token, None)
        if email is None:
            return envelope(401, "invalid_token", "The refresh token is not valid.")
        return self.issue(email)

    def expire_session(self) -> None:
        """Every token stops working, as when the refresh token outlived its lifetime."""
        self.access.clear()
        self.refresh_tokens.clear()

    def logout(self, request, caller) -> httpx.Response:
        self.refresh_tokens.pop(json.loads(request.content)["refresh_token"], None)
        return httpx.Response(204)

    def list_patients(self, request, caller) -> httpx.Response:
        search = request.url.params.get("search") or ""
        limit = int(request.url.params.get("limit", 50))
        offset = int(request.url.params.get("offset", 0))
        found = [p for p in self.patients if p["external_ref"].startswith(search)]
        items = found[offset : offset + limit]
        return httpx.Response(
            200, json={"items": items, "total": len(found), "limit": limit, "offset": offset}
        )

    def create_patient(self, request, caller) -> httpx.Response:
        if caller["role"] == "viewer":
            return envelope(403, "forbidden", "This needs one of the roles: admin, clinician.")
        return httpx.Response(
            201, json=self.add_patient(json.loads(request.content)["external_ref"])
        )

    def predict(self, request, caller) -> httpx.Response:
        key = request.headers.get("idempotency-key")
        if key in self.idempotency:
            return httpx.Response(200, json=self.idempotency[key])
        body = request.content
        if b"\x89PNG" not in body:
            return envelope(
                415, "unsupported_media_type", "The file is not a PNG, JPEG or TIFF image."
            )
        fields = dict(re.findall(rb'name="(\w+)"\r\n\r\n([^\r]*)\r\n', body))
        patient_id = fields.get(b"patient_id", b"").decode() or None
        prediction = self.add_prediction(patient_id=patient_id, **self.outcome)
        if key:
            self.idempotency[key] = prediction
        return httpx.Response(201, json=prediction)

    def list_predictions(self, request, caller) -> httpx.Response:
        params = request.url.params
        items = self.predictions
        if "reviewed" in params:
            wanted = params["reviewed"] == "true"
            items = [p for p in items if p["reviewed"] == wanted]
        if "reviewed_by_me" in params:
            wanted = params["reviewed_by_me"] == "true"
            mine = {
                r["prediction_id"]
                for r in self.reviews
                if r["is_current"] and r.get("reviewer") == caller["id"]
            }
            items = [p for p in items if (p["id"] in mine) == wanted]
        if "patient_id" in params:
            items = [p for p in items if p["patient_id"] == params["patient_id"]]
        if params.get("order") == "review_priority":
            # The data service's review order: indeterminate and disagreed-with first.
            disagreed = {
                r["prediction_id"]
                for r in self.reviews
                if r["is_current"] and r.get("verdict") == "disagree"
            }
            items = sorted(
                items,
                key=lambda p: not (p["assessment"] == "indeterminate" or p["id"] in disagreed),
            )
        return httpx.Response(
            200, json={"items": items[: int(params.get("limit", 50))], "next_cursor": None}
        )

    def get_prediction(self, request, caller) -> httpx.Response:
        wanted = request.extensions["match"]["id"]
        prediction = next((p for p in self.predictions if p["id"] == wanted), None)
        if prediction is None:
            return envelope(404, "prediction_not_found", f"No prediction {wanted}.")
        return httpx.Response(200, json=prediction)

    def explain(self, request, caller) -> httpx.Response:
        """The assistant's contract: a checked body, and an answer built from the facts that
        names the label, the probability and, for a question, the question and its history."""
        if caller["role"] == "viewer":
            return envelope(403, "forbidden", "This needs one of the roles: admin, clinician.")
        if self.assistant_retry_after_s is not None:
            response = envelope(
                429,
                "rate_limited",
                f"Too many questions to the assistant; try again in "
                f"{self.assistant_retry_after_s} s.",
            )
            response.headers["Retry-After"] = str(self.assistant_retry_after_s)
            return response
        wanted = request.extensions["match"]["id"]
        prediction = next((p for p in self.predictions if p["id"] == wanted), None)
        if prediction is None:
            return envelope(404, "prediction_not_found", f"No prediction {wanted}.")
        body = json.loads(request.content) if request.content else {}
        question, history = body.get("question"), body.get("history", [])
        if (
            set(body) - {"question", "history"}
            or (question is not None and not 1 <= len(question.strip()) <= 1000)
            or len(history) > 20
            or any(
                set(turn) != {"role", "content"}
                or turn["role"] not in ("user", "assistant")
                or not 1 <= len(turn["content"]) <= 4000
                for turn in history
            )
        ):
            return envelope(422, "validation_error", "The request body is not valid.")
        label, probability = prediction["label"], prediction["probability"]
        if label is None:
            facts = "This image could not be assessed: the model gives no verdict on it."
        else:
            facts = f"The model assessed this image as {label}, with a probability of "
            facts += f"{probability * 100:.1f} %."
        if question is None:
            answer = (
                f"{facts}\n\nDecision threshold: the model says malignant when P(malignant) "
                f"is {prediction['threshold'] * 100:.1f} % or more, and benign below."
            )
        else:
            answer = f"You asked: {question}\n\n{facts} ({len(history)} turns before.)"
        replaced = self.assistant_replaced
        return httpx.Response(
            200,
            json={
                "prediction_id": wanted,
                "kind": "explanation" if question is None else "follow_up",
                "answer": self.assistant_text or answer,
                **self.assistant,
                "replaced": replaced is not None,
                "replaced_reason": replaced[1] if replaced else None,
                "attempted_provider": replaced[0] if replaced else None,
                "facts": {
                    "assessment": prediction["assessment"],
                    "reasons": prediction["reasons"],
                    "failed_checks": [c for c in prediction["checks"] or [] if not c["passed"]],
                    "label": label,
                    "probability": probability,
                    "probabilities": prediction["probabilities"],
                    "threshold": prediction["threshold"],
                    "model_version": prediction["model_version"],
                    "reviewed": prediction["reviewed"],
                    "heatmap_focus": prediction["heatmap_focus"],
                },
                "caveat": CAVEAT,
                "prompt_sha256": "0" * 64,
                "latency_ms": 3.5,
                "audit_event_id": len(self.calls("POST", request.url.path)),
            },
        )

    def image(self, request, caller) -> httpx.Response:
        return httpx.Response(200, content=png_bytes(1, 32), headers={"content-type": "image/png"})

    def review(self, request, caller) -> httpx.Response:
        if caller["role"] == "viewer":
            return envelope(403, "forbidden", "This needs one of the roles: admin, clinician.")
        prediction_id = request.extensions["match"]["id"]
        prediction = next(p for p in self.predictions if p["id"] == prediction_id)
        body = json.loads(request.content)
        for earlier in self.reviews:
            # Each reviewer's own review is superseded; another's stays current.
            mine = earlier.get("reviewer") == caller["id"]
            if earlier["prediction_id"] == prediction_id and mine:
                earlier["is_current"] = False
        review = {
            "id": str(uuid.uuid4()),
            "prediction_id": prediction_id,
            "reviewer": caller["id"],
            "verdict": body["verdict"],
            "corrected_label": body.get("corrected_label"),
            "comment": body.get("comment"),
            "is_current": True,
            "created_at": datetime.now(UTC).isoformat(),
        }
        self.reviews.append(review)
        prediction["reviewed"] = True
        return httpx.Response(201, json=review)

    def list_reviews(self, request, caller) -> httpx.Response:
        wanted = request.extensions["match"]["id"]
        return httpx.Response(200, json=[r for r in self.reviews if r["prediction_id"] == wanted])

    def analysis_stats(self, request, caller) -> httpx.Response:
        """Slide analyses in numbers, as the slide service counts them (none here)."""
        return httpx.Response(
            200,
            json={"slides_analysed": 0, "analyses": {}, "tiles_analysed": 0, "tiles_per_s": None},
        )

    def stats(self, request, caller) -> httpx.Response:
        current = [r for r in self.reviews if r["is_current"]]
        agree = sum(r["verdict"] == "agree" for r in current)
        labelled = [p for p in self.predictions if p["label"] is not None]
        by_label = Counter(p["label"] for p in labelled)
        by_assessment = Counter(p["assessment"] or "not_recorded" for p in self.predictions)
        days: dict[str, list[dict]] = {}
        for p in self.predictions:
            days.setdefault(p["created_at"][:10], []).append(p)
        body = {
            "predictions": len(self.predictions),
            "mean_latency_ms": 12.5 if self.predictions else None,
            "p95_latency_ms": 20.0 if self.predictions else None,
            "by_label": dict(by_label),
            "by_day": [
                {
                    "day": day,
                    "count": len(predictions),
                    "by_label": dict(Counter(p["label"] for p in predictions if p["label"])),
                    "by_assessment": dict(
                        Counter(p["assessment"] or "not_recorded" for p in predictions)
                    ),
                }
                for day, predictions in sorted(days.items())
            ],
            "by_model_version": dict(Counter(p["model_version"] for p in self.predictions)),
            "by_assessment": {
                name: by_assessment[name]
                for name in ("assessable", "indeterminate", "not_assessable", "not_recorded")
            },
            "by_reason": dict(Counter(r for p in self.predictions for r in p["reasons"] or [])),
            "reviews": {
                "current": len(current),
                "agree": agree,
                "reviewed_predictions": len(current),
                "agreement_rate": round(agree / len(current), 4) if current else None,
            },
        }
        return httpx.Response(200, json=body)

    def export(self, request, caller) -> httpx.Response:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["prediction_id", "label"])
        for r in self.reviews:
            writer.writerow([r["prediction_id"], r["corrected_label"] or "agree"])
        return httpx.Response(
            200, content=out.getvalue().encode(), headers={"content-type": "text/csv"}
        )

    def list_models(self, request, caller) -> httpx.Response:
        """The registry's list: each version's summary, without its card and reports."""
        summaries = [
            {field: value for field, value in detail.items() if field in ModelVersion.model_fields}
            for detail in self.models.values()
        ]
        return httpx.Response(200, json=summaries)

    def model(self, request, caller) -> httpx.Response:
        version = request.extensions["match"]["v"]
        if version not in self.models:
            return envelope(404, "model_version_not_found", f"No model version {version!r}.")
        return httpx.Response(200, json=self.models[version])

    def activate(self, request, caller) -> httpx.Response:
        if caller["role"] != "admin":
            return envelope(403, "forbidden", "This needs the role admin.")
        version = request.extensions["match"]["v"]
        for detail in self.models.values():
            detail["status"] = "active" if detail["version"] == version else "archived"
        return httpx.Response(200, json=self.models[version])

    def list_users(self, request, caller) -> httpx.Response:
        items = [account["user"] for account in self.users.values()]
        return httpx.Response(
            200, json={"items": items, "total": len(items), "limit": 200, "offset": 0}
        )

    def create_user(self, request, caller) -> httpx.Response:
        body = json.loads(request.content)
        if len(body["password"]) < 12:
            return envelope(422, "weak_password", "The password must have at least 12 characters.")
        if body["email"] in self.users:
            return envelope(409, "email_taken", "A user with this email exists already.")
        user = self.add_user(body["email"], body["role"])
        user["full_name"] = body["full_name"]
        self.users[body["email"]]["password"] = body["password"]
        return httpx.Response(201, json=user)

    def update_user(self, request, caller) -> httpx.Response:
        user_id = request.extensions["match"]["id"]
        account = next(a for a in self.users.values() if a["user"]["id"] == user_id)
        changes = json.loads(request.content)
        if "password" in changes:
            account["password"] = changes.pop("password")
        account["user"].update(changes)
        return httpx.Response(200, json=account["user"])

    def list_slides(self, request, caller) -> httpx.Response:
        params = request.url.params
        limit, offset = int(params.get("limit", 20)), int(params.get("offset", 0))
        found = [s for s in self.slides if params.get("patient_id") in (None, s["patient_id"])]
        page = found[offset : offset + limit]
        body = {"items": page, "total": len(found), "limit": limit, "offset": offset}
        return httpx.Response(200, json=body)

    def _slide(self, request) -> dict[str, Any] | None:
        wanted = request.extensions["match"]["id"]
        return next((s for s in self.slides if s["id"] == wanted), None)

    def get_slide(self, request, caller) -> httpx.Response:
        slide = self._slide(request)
        if slide is None:
            return envelope(404, "slide_not_found", "No such slide.")
        return httpx.Response(200, json=slide)

    def slide_thumbnail(self, request, caller) -> httpx.Response:
        if self._slide(request) is None:
            return envelope(404, "slide_not_found", "No such slide.")
        return httpx.Response(200, content=jpeg_bytes(), headers={"content-type": "image/jpeg"})

    def view_link(self, request, caller) -> httpx.Response:
        slide = self._slide(request)
        if slide is None:
            return envelope(404, "slide_not_found", "No such slide.")
        grant = f"eyJ0eXAiOiJzbGlkZV92aWV3In0.{uuid.uuid4().hex}.c2ln"
        base = f"/api/v1/slides/{slide['id']}"
        link = {
            "grant": grant,
            "expires_at": (datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
            "dzi_url": f"{base}/dzi?grant={grant}",
            "tile_url_template": f"{base}/tiles/{{level}}/{{col}}_{{row}}.jpeg?grant={grant}",
        }
        self.view_links.append(link)
        return httpx.Response(200, json=link)


def jpeg_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (230, 200, 230)).save(buffer, format="JPEG")
    return buffer.getvalue()


def render(component: str, role: str | None) -> None:
    """The AppTest script's body: sign in as `role` once per session, then draw `component`
    (a `module:function` of `frontend.components`) with the fake's client."""
    import importlib

    client = CURRENT.client(st.session_state)
    if role and client.session is None:
        client.login(f"{role}@example.com", PASSWORD)
    module, function = component.split(":")
    getattr(importlib.import_module(f"frontend.components.{module}"), function)(client)
