"""localcloud: an emulator of the Google Cloud REST APIs opslib uses, on 127.0.0.1.

It answers the official clients and gcloud unchanged, really runs deployed services, really
fires Scheduler jobs on their cron, and really records logs. One port serves every API;
control routes live under /_localcloud/. See docs/localcloud.md.

Owns one module (or a few) per Google API, the server, its store and the process control.
May import `opslib.core` and `opslib.spec` (Google's rules, cron), never a step or the doctor.
"""
