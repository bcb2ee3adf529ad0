"""The persistent model: jobs, queues, agents, quotas, retry policies, and committing them.

Everything ``job()`` and ``queue.put()`` need, in any thread, and every class a
database stores (listed in :mod:`zasync.schema`).  It imports no other layer.
"""
