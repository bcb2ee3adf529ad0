"""zasync in Zope and Plone: configured in ``zope.conf``, started with the site, jobs run as users.

Install with ``pip install 'zasync[zope]'`` and include this package's ZCML
(``<include package="zasync.zope" />`` in the instance's ``site.zcml``).
Then:

* :mod:`zasync.zope.settings`: the ``<product-config zasync>`` section of
  ``zope.conf`` (and ``ZASYNC_ZOPE_*`` environment variables, which win):
  whether this instance runs a worker, its threads or agents, its UUID
  file, the database that holds the queues;
* :mod:`zasync.zope.lifecycle`: when Zope has opened its database, the
  queues are installed and, on a worker instance, a dispatcher starts; it
  stops gracefully when the process ends;
* :mod:`zasync.zope.run_as`: :func:`~zasync.zope.run_as.put_as_user` puts
  a job that runs as the user who put it, in the site and on the object it
  was put for, with a request for correct (virtual-host aware) URLs.
"""
