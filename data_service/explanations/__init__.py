"""The record of every assistant exchange about a prediction (an audit event each)."""
