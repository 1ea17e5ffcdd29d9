"""The operators' back office: a Django project (`kiosk cloud console`) that holds the cloud's
signing key so operators never do; every operator action is a signed cloud op made through
`cloud_sync.admin`, checked against Django permissions and recorded in the audit trail."""

CONFIG_ENV = "KIOSK_CLOUD_CONFIG"  # the cloud config the console's settings are built from
