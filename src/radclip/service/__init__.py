"""The HTTP service: create_app(settings), lifespan, one router per resource, problem+json errors, metrics."""
