"""Off-site evidence in S3-compatible object storage that nobody has to trust.

The device uploads what it already keeps (age ciphertext, signed clip manifests, the signed audit
log's checkpoints and its entries encrypted to the owners); the owners list, verify and restore
from the bucket with their own read-only credentials, doorbell or not.

- :mod:`hub.offsite.s3`: the bucket (where, which credentials) and the S3 client calls.
- :mod:`hub.offsite.layout`: object names, and what each reveals to the storage operator.
- :mod:`hub.offsite.seaweed`: a SeaweedFS S3 server on loopback, for tests and ``doorward demo``.
"""
