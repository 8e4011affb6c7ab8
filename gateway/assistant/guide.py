"""How the system is used, in the words the assistant answers with: the same text goes into
the language model's prompt and into the offline answers, so both say the same."""

TOPICS: dict[str, str] = {
    "analyse": (
        "To assess images, open Analyse (clinicians and admins), optionally enter the "
        "patient's reference (a new one is registered), choose one or several PNG or JPEG "
        "images and start the analysis. Each image gets its label, P(malignant) on a gauge "
        "with the decision threshold marked, the model version and the Grad-CAM overlay "
        "beside the original."
    ),
    "history": (
        "Patients & history finds a patient by the start of their reference and shows their "
        "predictions over time; open one to see its images and every review. Without a "
        "patient it lists the most recent predictions."
    ),
    "review": (
        "Review queue shows unreviewed predictions one at a time: agree with the model, or "
        "correct the label, with an optional comment. A later review by the same clinician "
        "replaces their earlier one; the history keeps both. The assistant knows the "
        "reviewers' verdicts, never their comments."
    ),
    "export": (
        "Admins download the reviewed labels as CSV from the Review queue; that file is the "
        "training set for the next model version, which ML engineers train, evaluate and "
        "then activate on the Models page."
    ),
    "dashboard": (
        "Dashboard shows predictions by day and label, by model version, how often "
        "clinicians agreed with the model, and the model's latency, over a chosen period."
    ),
    "models": (
        "Models lists the registered versions with their test metrics, confusion matrix, ROC "
        "curve, training history and card; admins activate another version there. Data shows "
        "the training set's reports: class balance, image sizes, colour statistics, samples."
    ),
    "assistant": (
        "The Assistant explains one prediction from its stored facts and answers questions "
        "about it and about using the system. It is never given the patient's reference or any "
        "record id. Its answers "
        "name the provider that produced them; an answer that contradicts the stored label "
        "or probability is replaced by the built-in one."
    ),
}

GUIDE = "\n".join(f"- {text}" for text in TOPICS.values())
