"""The Python side of the pganalytics_ml extension.

PL/Python bodies call plain functions in these modules and pass ``plpy`` in explicitly, so every
function can also be called and tested outside the server.
"""

__version__ = "0.3.0"
