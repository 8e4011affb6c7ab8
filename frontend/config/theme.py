"""The app's look: Streamlit theme options (passed at start by `python -m frontend`) and a
little CSS for what the theme cannot set."""

THEME = {
    "base": "light",
    "primaryColor": "#7b1fa2",  # haematoxylin-eosin purple
    "backgroundColor": "#ffffff",
    "secondaryBackgroundColor": "#f6f1f8",
    "textColor": "#1f1f29",
    "font": "sans serif",
}

CSS = """
<style>
  /* Metrics read as cards. */
  div[data-testid="stMetric"] {
    background: #f6f1f8; border-radius: 0.5rem; padding: 0.5rem 0.75rem;
  }
</style>
"""
