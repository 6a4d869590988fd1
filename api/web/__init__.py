"""Files the browser loads from the web process: the checkout SDK and the customer app's assets.

Templates and static files live beside this package (templates/, static/); the pages that
render them are in api/customer and api/backoffice.
"""
