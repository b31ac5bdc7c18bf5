// Command mkimage builds the gin-demo image tarball without a daemon, or
// verifies one.
//
//	mkimage -binary bin/gin-demo -version v1 -out bin/gin-demo-image.tar
//	mkimage -verify bin/gin-demo-image.tar
//
// The tarball is docker-save style (manifest.json, config, one gzip layer),
// tagged kanary/gin-demo:<version>: `kind load image-archive` and
// `docker load` read it.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/kanary-dev/kanary/app/internal/image"
)

func main() {
	var (
		o      image.Options
		out    = flag.String("out", "bin/gin-demo-image.tar", "tarball to write")
		verify = flag.String("verify", "", "verify this tarball instead of building")
		tag    = flag.String("tag", "", "with -verify: the tag the tarball must carry (default: any kanary/gin-demo tag)")
		epoch  = flag.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time, Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	)
	flag.StringVar(&o.Binary, "binary", "bin/gin-demo", "static gin-demo binary")
	flag.StringVar(&o.Passwd, "passwd", "image/rootfs/etc/passwd", "the image's /etc/passwd")
	flag.StringVar(&o.Group, "group", "image/rootfs/etc/group", "the image's /etc/group")
	flag.StringVar(&o.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to ship")
	flag.StringVar(&o.Version, "version", "", "version: image tag and label (required to build)")
	flag.StringVar(&o.Revision, "revision", "", "git commit for the revision label")
	flag.Parse()

	if *verify != "" {
		s, err := image.Verify(*verify, *tag)
		fmt.Println(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mkimage: %s: %v\n", *verify, err)
			os.Exit(1)
		}
		fmt.Println("  ok: one layer, static binary, user", image.User, "entrypoint", image.BinaryPath, "port", image.Port, "labels, no shell")
		return
	}

	secs := int64(0)
	if *epoch != "" {
		var err error
		if secs, err = strconv.ParseInt(*epoch, 10, 64); err != nil {
			fmt.Fprintf(os.Stderr, "mkimage: -created %q: not Unix seconds\n", *epoch)
			os.Exit(2)
		}
	}
	o.Created = time.Unix(secs, 0).UTC()
	img, err := image.Build(o)
	if err == nil {
		err = image.WriteTarball(*out, o.Version, img)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
	s, err := image.Verify(*out, "")
	fmt.Printf("wrote %s\n%s\n", *out, s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: verify %s: %v\n", *out, err)
		os.Exit(1)
	}
}
