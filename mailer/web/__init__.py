"""The reader's web side, served by ``mailer serve``: one-click unsubscribe, the archive and
the forward form. ``app.create_app`` builds the Starlette application."""
