"""The benchmark's job functions, one module per library, all doing the same tiny append.

Every job calls :func:`peerjobs.common.record_drain` (a drain job) or
:func:`peerjobs.common.record_sample` (a latency job); the per-library modules
only wrap these in each library's task declaration.  The modules are imported
by worker processes, of the project's environment (zasync) or of the peers'
environment (the others): only the module of its own library is imported.
"""
