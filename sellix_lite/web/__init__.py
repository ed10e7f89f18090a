"""The HTTP layer: the app factory, the API, the storefront, the dashboard and the IPN endpoint.

Everything that knows about requests lives here; it calls the services and renders what
they return. Nothing outside this package imports Flask or anything from it.
"""
