"""Each class conforms to the interface that documents it."""

from __future__ import annotations

import uuid

import pytest
from zope.interface.verify import verifyClass, verifyObject

import zasync
from zasync import interfaces

import support


@pytest.mark.parametrize(
    "iface, cls",
    [
        (interfaces.IJob, zasync.Job),
        (interfaces.IQueue, zasync.Queue),
        (interfaces.IQuota, zasync.Quota),
        (interfaces.IAgent, zasync.Agent),
        (interfaces.ICompletedCollection, zasync.CompletedCollection),
        (interfaces.IDispatcherAgents, zasync.DispatcherAgents),
        (interfaces.IDispatchers, zasync.Dispatchers),
        (interfaces.IFailure, zasync.Failure),
        (interfaces.IRetryPolicy, zasync.RetryCommonFourTimes),
    ],
)
def test_class_implements_interface(iface, cls):
    assert verifyClass(iface, cls)


def test_objects_provide_interfaces(queue):
    assert verifyObject(interfaces.IQueue, queue)
    da = queue.dispatchers.register(uuid.uuid4())
    assert verifyObject(interfaces.IDispatcherAgents, da)
    da["main"] = agent = zasync.Agent()
    assert verifyObject(interfaces.IAgent, agent)
    assert verifyObject(interfaces.IQuota, queue.quotas.create("q"))
    assert verifyObject(interfaces.IJob, zasync.Job(support.mock_work))


def test_public_api_is_exported():
    for name in zasync.__all__:
        assert hasattr(zasync, name), name
    assert zasync.KEY == "zasync"
    assert zasync.TimeoutError is not TimeoutError
    assert issubclass(zasync.BadStatusError, zasync.ZasyncError)
