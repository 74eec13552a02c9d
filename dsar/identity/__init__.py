"""Identity verification (GDPR Art. 12(6)): confirming the requester is the data subject.

Before any data leaves or is deleted, a request's identity is confirmed by one of three
methods, chosen per request type by :mod:`dsar.identity.policy` (EDPB 01/2022: reuse what is
already known, ask for no ID copies):

* ``bankid``: a login link to the company's OpenID Connect broker (:mod:`dsar.identity.bankid`);
* ``email_code``: a one-time code sent to the address on record (:mod:`dsar.identity.email_code`);
* ``operator``: a named operator reviews the case in a Prefect form (:mod:`flows.identity`).

Asking the subject suspends the statutory clock (a ``Suspension`` row); the answer arrives at
``dsar serve`` (:mod:`dsar.identity.web`), which records it and, when the flow stopped waiting,
starts it again. Every outcome is an event in the request's chain; no secret, national id or
code is stored in clear or logged.
"""
