"""What the stored predictions add up to: statistics, and the reviewed labels as CSV."""
