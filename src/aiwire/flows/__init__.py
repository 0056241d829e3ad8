"""Flows: declarative AI integrations from a source system to a destination.

A flow file (YAML) names a ``source`` (CSV, JSONL, a signed webhook, HTTP polling, SQL), ordered
``steps`` (map, transform, prompt, model, classify, chunk, branch, review, filter) and ``sinks``
(HTTP, SQL upsert, JSONL, CSV, ``.eml`` drafts). The runner moves each record through them with
durable per-record state, validated model output, a human review queue, a dead-letter queue,
run history and alerts. The format is documented in ``docs/flows.md``.

::

    from aiwire.flows import FlowRunner, FlowStore, load_flow
    flow = load_flow("examples/lead-followup/flow.yaml")
    summary = await FlowRunner(FlowStore(database), router).run(flow)
"""

from aiwire.flows.loader import Flow, FlowError, flow_from_dict, load_flow
from aiwire.flows.review import ReviewError, ReviewQueue
from aiwire.flows.runner import FlowRunner, RunSummary
from aiwire.flows.store import FlowStore
from aiwire.flows.webhook import sign

__all__ = [
    "Flow",
    "FlowError",
    "FlowRunner",
    "FlowStore",
    "ReviewError",
    "ReviewQueue",
    "RunSummary",
    "flow_from_dict",
    "load_flow",
    "sign",
]
