"""Data service: patients, images, predictions, reviews, audit events and statistics;
database `data`."""
