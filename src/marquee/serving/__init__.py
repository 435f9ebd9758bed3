"""The HTTP service that answers home-page requests from a bundle (no torch, no Lightning, no training code).

:func:`marquee.serving.app.create_app` builds the FastAPI app; ``python -m marquee.serve`` runs it.
"""
