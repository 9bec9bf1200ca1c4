"""The course's online shop: one code base that runs as a monolith or as microservices.

Every business module (catalog, inventory, payments, orders) is a plain class. The
monolith wires them together with in-process calls and one database; each microservice
serves one module over HTTP with its own database, and the orders module reaches the
others through HTTP clients with the same interface.
"""

__version__ = "0.3.0"
