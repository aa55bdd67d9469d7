"""Prometheus metrics of one process, served at `/metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Counters and histograms; one registry per Runtime so tests can run several."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter("switchboard_turns", "Turns by provider and final status",
                             ["provider", "status"], registry=r)
        self.ack = Histogram("switchboard_ack_seconds", "Webhook acknowledgement latency",
                             ["provider"], buckets=_LATENCY, registry=r)
        self.delivery = Histogram("switchboard_delivery_seconds",
                                  "From the reply being ready to the provider accepting it, "
                                  "retries included",
                                  ["provider"], buckets=_LATENCY, registry=r)
        self.agent = Histogram("switchboard_agent_seconds", "Agent handler duration",
                               ["agent"], buckets=_LATENCY, registry=r)
        self.retries = Counter("switchboard_delivery_retries", "Delivery attempts to retry",
                               ["provider"], registry=r)
        self.rejected = Counter("switchboard_rejected_requests",
                                "Webhook requests refused before becoming turns",
                                ["account", "reason"], registry=r)
        self.edits = Counter("switchboard_live_edits",
                             "Live message calls sent (stream starts, appends, edits, drafts)",
                             ["provider", "mode"], registry=r)
        self.streams = Counter("switchboard_live_streams",
                               "Live messages by outcome: started, finished, failed (while "
                               "shown), fell_back (the final message went as a fresh one)",
                               ["provider", "outcome"], registry=r)
        self.paced = Histogram("switchboard_paced_wait_seconds",
                               "How long a message waited for the provider's rate limits",
                               ["provider"], buckets=_LATENCY, registry=r)
        self.typing = Counter("switchboard_working_indicator_calls",
                              "Working indicator calls (typing, status, reaction)",
                              ["provider", "how"], registry=r)
        self.outbox_depth = Gauge("switchboard_outbox_depth",
                                  "Replies waiting for delivery (pending or retrying)",
                                  registry=r)
        self.queued = Gauge("switchboard_queue_turns",
                            "Recorded turns of this process waiting in memory for a worker",
                            registry=r)
        self.backlog = Gauge("switchboard_queue_backlog",
                             "Recorded turns of this process waiting in the database "
                             "(status queued) because the queue was full",
                             registry=r)
        self.refilled = Counter("switchboard_queue_refilled",
                                "Turns read back from the database into the queue",
                                registry=r)
        self.files = Counter("switchboard_files", "Files by provider, direction (in, out) "
                             "and outcome (stored, skipped, failed, delivered)",
                             ["provider", "direction", "outcome"], registry=r)
        self.file_failures = Counter("switchboard_file_transfer_failures",
                                     "Failed file downloads and uploads (each attempt)",
                                     ["provider", "direction"], registry=r)
        self.files_bytes = Gauge("switchboard_files_stored_bytes",
                                 "Bytes of the distinct files kept in the file store",
                                 registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
