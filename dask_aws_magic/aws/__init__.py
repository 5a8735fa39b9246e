"""The AWS layer shared by every AWS backend: sessions and clients, errors explained, network
access, tags and discovery, TLS material and pricing.
"""
