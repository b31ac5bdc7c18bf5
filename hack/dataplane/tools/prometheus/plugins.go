// Replaces github.com/prometheus/prometheus@v0.42.0/plugins/plugins.go in the
// copy of the module that hack/dataplane/build.sh builds from. Upstream generates that
// file from plugins.yml ("make plugins") and documents editing the list to
// build Prometheus with fewer service discoveries; the local cluster needs only
// Kubernetes (plugins/minimum.go still adds file and http). This keeps the cold
// build small: no cloud SDKs (AWS, Azure, GCE, ...).

package plugins

import (
	// Register kubernetes plugin.
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)
