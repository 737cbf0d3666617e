"""Alembic migrations of the daemon's database, shipped inside the package.

Run them with ``Store.upgrade()`` or ``pbx-agent db upgrade``; no ``alembic.ini`` is needed.
"""
