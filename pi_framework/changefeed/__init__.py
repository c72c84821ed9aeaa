"""The change feed from Plane's PostgreSQL (logical replication, ``pgoutput``): which workspaces changed, within a second.

=============  ==================================================================================================
``pgoutput``   the parser of ``pgoutput``'s binary messages (protocol 1)
``feed``       set-up (publication, replica identities, slot), the consumer, the lag check, the worker's runner
``requests``   what the feed records in the PI database: flags, compare requests, the slot's status
``plugin``     the hooks: ``pi changefeed setup|run|status`` and the consumer thread in the worker's main process
=============  ==================================================================================================

Importing this package imports neither psycopg2 nor Celery.
"""
