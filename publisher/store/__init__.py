"""The store: the only room that speaks SQL.

``schema`` declares the tables, ``engine`` opens the database; ``files``,
``stories``, ``issues``, ``subscribers`` and ``deliveries`` are named queries
that return frozen dataclasses. Functions that are a whole transaction take
the engine; those that are one step of the caller's transaction take a
connection, so the pipeline can publish a story atomically.
"""

from .engine import Connection, Engine, connect, delete_kv, get_kv, set_kv

__all__ = ["Connection", "Engine", "connect", "delete_kv", "get_kv", "set_kv"]
