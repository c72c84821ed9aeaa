"""Testing kit for pi-framework and its plugin authors.

Installed as a pytest plugin (entry point ``pytest11``), so these fixtures are available in any
project that has pi-framework installed:

* ``pi_settings`` — settings on a throw-away ``PI_DATA_DIR`` (embedded broker, SQLite PI database).
* ``pi_database`` — that PI database with its schema.
* ``pi_registry`` — the plugins loaded from entry points under those settings.
* ``register_plugin`` — ``register_plugin(obj, name)`` adds a plugin under test to the registry.
* ``postgres_url`` / ``rabbitmq_url`` — a fresh PostgreSQL database / the RabbitMQ URL, from
  ``PI_TEST_POSTGRES_URL`` / ``PI_TEST_RABBITMQ_URL``; skipped when unset, a failure when
  ``PI_REQUIRE_SERVICES=1`` (CI sets it, so CI cannot pass by skipping).

``plane_db`` / ``plane_settings`` give a fresh PostgreSQL database with Plane's real schema and row factories
(:mod:`pi_framework.testing.plane`). Contract tests: :mod:`pi_framework.testing.sink_contract` (``SinkContract``) and
:mod:`pi_framework.testing.source_contract` (``SourceContract``). :mod:`pi_framework.testing.worker` runs a real
worker in a subprocess (``WorkerProcess``) and waits on conditions with a deadline (``wait_for``).

Only this package imports pytest. What the product itself uses lives outside it and is re-exported here:
the Plane row factories in :mod:`pi_framework.plane.sample`, the worker helpers in
:mod:`pi_framework.worker_process` (``pi demo`` uses both, and must work without the ``test`` extra).
"""
