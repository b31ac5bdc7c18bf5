// Command coredns is CoreDNS with only the plugins the local cluster's DNS
// needs: cluster.local from the kubernetes plugin, plus the usual kube-dns
// companions. Upstream's main imports every plugin (core/plugin/zplugin.go);
// this is the documented way to build a reduced one: import only the wanted
// plugin packages and set dnsserver.Directives to them, in plugin.cfg order.
// build.sh builds it into ${BIN_COREDNS}/coredns.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins we use. Their imports register a few more plugins
	// (metadata, debug, prometheus, dnstap, transfer), which cost nothing
	// extra, so those are enabled in directives too. bind, forward, hosts
	// and template add a few seconds of compile at most.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

// directives is the plugin execution order: upstream plugin.cfg's order,
// restricted to the plugins compiled in. A plugin missing here cannot be used
// in a Corefile even if it is compiled in.
var directives = []string{
	"metadata",
	"reload",
	"bind",
	"debug",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"dnstap",
	"loadbalance",
	"cache",
	"template",
	"transfer",
	"hosts",
	"kubernetes",
	"forward",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
