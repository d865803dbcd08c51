# A server of a three-server cluster, Consul style. Validate with: muster validate config/server.hcl
server           = true
bootstrap_expect = 3
datacenter       = "dc1"
data_dir         = "/var/lib/muster"
bind_addr        = "127.0.0.1"
client_addr      = "127.0.0.1"
retry_join       = ["127.0.0.2", "127.0.0.3"]
retry_interval   = "30s"
log_level        = "info"

ports {
  serf_lan = 8301
  server   = 8300
  http     = 8500
}
