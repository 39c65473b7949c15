// etcdgo drives a server with etcd's own Go client (go.etcd.io/etcd/clientv3, as Debian's
// golang-etcd-server-dev ships it), so the tests can check that what Go services use works
// against cairn as it does against etcd: TLS, client certificates, users and passwords.
//
// Usage: etcdgo [flags] put KEY VALUE | get KEY | del KEY | status
//
// It prints one line: "OK" after a put or del, the value after a get ("<none>" when the key
// is absent), the server's version after status, or "error: <what the client said>" with
// exit status 1.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/transport"
)

func main() {
	endpoints := flag.String("endpoints", "http://127.0.0.1:2379", "comma-separated endpoint URLs")
	cacert := flag.String("cacert", "", "CA bundle that verifies the server")
	cert := flag.String("cert", "", "client certificate")
	key := flag.String("key", "", "client certificate's key")
	skipVerify := flag.Bool("insecure-skip-tls-verify", false, "do not verify the server's certificate")
	user := flag.String("user", "", "user name")
	password := flag.String("password", "", "password")
	timeout := flag.Duration("timeout", 5*time.Second, "dial and request timeout")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		fail(fmt.Errorf("no command"))
	}

	cfg := clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: *timeout,
		Username:    *user,
		Password:    *password,
	}
	if *cacert != "" || *cert != "" || *skipVerify {
		info := transport.TLSInfo{CertFile: *cert, KeyFile: *key, TrustedCAFile: *cacert}
		var tlsConfig *tls.Config
		var err error
		if *cacert == "" && *cert == "" {
			tlsConfig = &tls.Config{}
		} else if tlsConfig, err = info.ClientConfig(); err != nil {
			fail(err)
		}
		tlsConfig.InsecureSkipVerify = *skipVerify
		cfg.TLS = tlsConfig
	}
	client, err := clientv3.New(cfg)
	if err != nil {
		fail(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	switch {
	case args[0] == "put" && len(args) == 3:
		_, err = client.Put(ctx, args[1], args[2])
		done(err, "OK")
	case args[0] == "del" && len(args) == 2:
		_, err = client.Delete(ctx, args[1])
		done(err, "OK")
	case args[0] == "get" && len(args) == 2:
		resp, err := client.Get(ctx, args[1])
		if err != nil {
			fail(err)
		}
		if len(resp.Kvs) == 0 {
			fmt.Println("<none>")
		} else {
			fmt.Println(string(resp.Kvs[0].Value))
		}
	case args[0] == "status" && len(args) == 1:
		resp, err := client.Status(ctx, cfg.Endpoints[0])
		if err != nil {
			fail(err)
		}
		fmt.Println(resp.Version)
	default:
		fail(fmt.Errorf("unknown command %q", strings.Join(args, " ")))
	}
}

func done(err error, ok string) {
	if err != nil {
		fail(err)
	}
	fmt.Println(ok)
}

func fail(err error) {
	fmt.Printf("error: %v\n", err)
	os.Exit(1)
}
