"""What every feature of the gateway stands on, and no feature in itself: the clients of the
downstream services, passing a request on to one, rate limits, the edge middleware and the
error envelope the routes document."""
