"""`webhook_delivery`: a sender of one hook's deliveries (`app.services.webhooks.deliver`
claims the due ones heading their object's queue, sends them signed and concurrently to
a checked address, records the outcomes, and goes on until none is due)."""

from __future__ import annotations

from app.models import Job
from app.services import jobs, webhooks
from workers.context import JobContext
from workers.registry import handles


@handles(jobs.WEBHOOK_DELIVERY)
async def webhook_delivery(context: JobContext, job: Job) -> None:
    """Send the due deliveries of hook `payload["webhook"]`."""
    await webhooks.deliver(context.database, context.settings, webhook=int(job.payload["webhook"]))
