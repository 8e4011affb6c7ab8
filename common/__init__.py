"""Plumbing shared by every service: settings, logging, errors, metrics, health, database, HTTP.

Nothing in here knows about users, images or models; business logic lives in the services.
Each module imports only what it needs so that lightweight components (the frontend) can
use the settings and logging modules without installing the web stack.
"""
