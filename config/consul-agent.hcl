# An existing Consul agent file dropped in as is: the keys muster implements are read (of
# telemetry, disable_hostname: docs/metrics.md), the Consul-only ones (ui_config) are accepted
# with a warning.
server           = true
bootstrap_expect = 3
node_name        = "consul-1"
data_dir         = "/opt/consul"
bind_addr        = "127.0.0.1"
skip_leave_on_interrupt = true
start_join       = ["127.0.0.2"]

ui_config {
  enabled = true
}

telemetry {
  disable_hostname = true
}
