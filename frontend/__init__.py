"""The clinicians' Streamlit app; it talks only to the gateway."""
