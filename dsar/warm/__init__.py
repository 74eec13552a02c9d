"""Warm flow-run processes: a process worker whose flow runs start without importing anything.

A process work pool starts ``python -m prefect.engine`` for every flow run, and that process
spends several CPU-seconds importing Prefect, SQLAlchemy, weasyprint and the flows before the
run's first line. Here a long-lived *zygote* imports all of it once; each flow run is a fork of
it (:mod:`dsar.warm.zygote`), asked for by a tiny launcher (:mod:`dsar.warm.launch`) that the
worker starts in place of the engine command (:mod:`dsar.warm.worker`). A run stays a process
of its own: a crash or a leak ends with it, as with the stock worker.

Kept free of imports: the launcher is imported through this package.
"""
