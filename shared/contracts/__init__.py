"""Message contracts: one module per bounded area (cases, referrals), all built on ``base.Contract``.

A contract's AMQP ``type`` (``TYPE``, e.g. ``case.reported.v1``) names its major version; a consumer
decodes only the types it knows (``shared.consuming.decode``) and dead-letters any other with the reason.
"""
