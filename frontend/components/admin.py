"""Admin: the users of the system; create them, change their role, deactivate them."""

import streamlit as st

from frontend.components.widgets import plain, show_error, when
from frontend.utils.gateway_client import GatewayClient, GatewayError

ROLES = ["clinician", "viewer", "admin"]
FLASH_KEY = "admin_flash"


def render_admin(client: GatewayClient) -> None:
    st.header("Users")
    if flash := st.session_state.pop(FLASH_KEY, None):
        st.success(flash)
    try:
        users = client.users()["items"]
    except GatewayError as exc:
        show_error(exc, "load the users")
        return
    st.dataframe(
        [
            {
                "email": u["email"],
                "name": u["full_name"],
                "role": u["role"],
                "active": u["is_active"],
                "last sign-in": when(u["last_login_at"]),
            }
            for u in users
        ],
        hide_index=True,
    )
    create_tab, edit_tab = st.tabs(["Create a user", "Change a user"])
    with create_tab:
        render_create_user(client)
    with edit_tab:
        render_edit_user(client, users)


def render_create_user(client: GatewayClient) -> None:
    # Cleared once submitted: the initial password does not stay on the screen.
    with st.form("create-user", clear_on_submit=True):
        email = st.text_input("Email")
        full_name = st.text_input("Full name")
        role = st.selectbox("Role", ROLES)
        password = st.text_input(
            "Initial password",
            type="password",
            help="At least 12 characters and not a common password; share it privately.",
        )
        submitted = st.form_submit_button("Create user", type="primary")
    if not submitted:
        return
    if not (email.strip() and full_name.strip() and password):
        st.warning("Email, full name and password are all needed.")
        return
    try:
        created = client.create_user(email.strip(), full_name.strip(), role, password)
    except GatewayError as exc:
        show_error(exc, "create the user")
        return
    st.session_state[FLASH_KEY] = f"Created {plain(created['email'])} ({created['role']})."
    st.rerun()


def render_edit_user(client: GatewayClient, users: list[dict]) -> None:
    if not users:
        return
    by_email = {u["email"]: u for u in users}
    email = st.selectbox("User", list(by_email), key="edit-user")
    user = by_email[email]
    with st.form(f"edit-{user['id']}"):
        role = st.selectbox("Role", ROLES, index=ROLES.index(user["role"]))
        active = st.checkbox(
            "Active (may sign in)",
            value=user["is_active"],
            help="Deactivating ends every session of this user at once.",
        )
        password = st.text_input("New password (leave empty to keep)", type="password")
        submitted = st.form_submit_button("Save changes")
    if not submitted:
        return
    changes: dict[str, str | bool] = {}
    if role != user["role"]:
        changes["role"] = role
    if active != user["is_active"]:
        changes["is_active"] = active
    if password:
        changes["password"] = password
    if not changes:
        st.info("Nothing changed.")
        return
    try:
        client.update_user(user["id"], **changes)
    except GatewayError as exc:
        show_error(exc, f"change {email}")
        return
    st.session_state[FLASH_KEY] = f"Saved {plain(email)}: {', '.join(sorted(changes))} changed."
    st.rerun()
