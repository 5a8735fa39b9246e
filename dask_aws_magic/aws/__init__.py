"""The AWS layer shared by every AWS backend (nothing here knows instances from tasks):
``session`` (sessions, clients, the ``aws(doing)`` guard), ``errors`` (AWS errors explained),
``network`` (the caller's address range, the cluster's security group), ``tags`` (tags and finding
resources by them), ``scopes`` (a region seen with one set of credentials; searching many at once),
``tls`` (the cluster's certificate) and ``pricing``.
"""
