"""TLS certificates for the router: uploaded ones, ACME ones, and their expiry.

``names``      host name rules: what a custom domain may be, what a certificate covers
``pem``        reading and checking PEM certificates and keys; self-signed defaults
``publish``    the certificate directory the router workers load (atomic index)
``challenges`` HTTP-01 tokens published for the router to answer
``acme``       one ACME order, start to finish, with the ``acme`` library
``service``    which certificate serves which host; ACM; renewal; expiry warnings
"""
