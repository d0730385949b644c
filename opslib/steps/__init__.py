"""The five steps, one automation at a time: scaffold, endpoint, deploy, schedule, verify.

Owns step 1 `scaffold`, step 2 `endpoint/`, step 3 `deploy/`, step 4 `schedule`, step 5
`verify/`, plus `secrets` (Secret Manager) and `logs` (Cloud Logging as DataFrames).
May import `core`, `spec`, `cloud`; never the doctor, the fleet or `opslib.notebook`.
"""
