"""Assessing an image (the prediction flow), and listing, opening and reviewing predictions."""
