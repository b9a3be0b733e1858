package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// This file holds the human (table) forms of the pool commands' results. The JSON forms are the Azure SDK's.

// fieldList is a list of "name: value" lines, aligned.
type fieldList [][2]string

// add appends a line, unless value is empty.
func (l *fieldList) add(name, value string) {
	if value != "" {
		*l = append(*l, [2]string{name, value})
	}
}

// write writes the lines to w.
func (l fieldList) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, f := range l {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
	}
	return tw.Flush()
}

// printKey writes a key's human form.
func printKey(w io.Writer, k azkeys.KeyBundle) error {
	var l fieldList
	addKeyFields(&l, k.Key, k.Attributes, k.Tags)
	return l.write(w)
}

// printDeletedKey writes a deleted key's human form.
func printDeletedKey(w io.Writer, k azkeys.DeletedKey) error {
	var l fieldList
	addKeyFields(&l, k.Key, k.Attributes, k.Tags)
	l.add("deleted", formatTime(k.DeletedDate))
	l.add("purged after", formatTime(k.ScheduledPurgeDate))
	l.add("recovery id", deref(k.RecoveryID))
	return l.write(w)
}

// addKeyFields adds the lines that describe a key version.
func addKeyFields(l *fieldList, key *azkeys.JSONWebKey, a *azkeys.KeyAttributes, tags map[string]*string) {
	if key != nil {
		if key.KID != nil {
			l.add("name", key.KID.Name())
			l.add("version", key.KID.Version())
			l.add("kid", string(*key.KID))
		}
		l.add("kty", string(deref(key.Kty)))
		l.add("size", keySize(key))
		l.add("curve", string(deref(key.Crv)))
		var ops []string
		for _, op := range key.KeyOps {
			ops = append(ops, string(deref(op)))
		}
		l.add("ops", strings.Join(ops, ","))
	}
	if a != nil {
		l.add("enabled", formatBool(a.Enabled))
		l.add("not before", formatTime(a.NotBefore))
		l.add("expires", formatTime(a.Expires))
		l.add("created", formatTime(a.Created))
		l.add("updated", formatTime(a.Updated))
		if a.RecoverableDays != nil {
			l.add("recoverable days", fmt.Sprint(*a.RecoverableDays))
		}
		l.add("recovery level", deref(a.RecoveryLevel))
	}
	l.add("tags", formatTags(tags))
}

// keySize is an RSA key's modulus size in bits; "" for other keys, whose size the pool does not return.
func keySize(k *azkeys.JSONWebKey) string {
	if len(k.N) == 0 {
		return ""
	}
	return fmt.Sprint(new(big.Int).SetBytes(k.N).BitLen())
}

// formatTags writes tags as "k1=v1,k2=v2", sorted by key.
func formatTags(tags map[string]*string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		kv = append(kv, k+"="+deref(tags[k]))
	}
	return strings.Join(kv, ",")
}

func formatTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func formatBool(b *bool) string {
	if b == nil {
		return ""
	}
	return fmt.Sprint(*b)
}

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// keyRow is one line of a list of keys.
type keyRow struct {
	name, kty, enabled, version, created string
}

// printKeyRows writes rows as a table with a header.
func printKeyRows(w io.Writer, rows []keyRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKTY\tENABLED\tVERSION\tCREATED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.name, r.kty, r.enabled, r.version, r.created)
	}
	return tw.Flush()
}

// fetchParallel is how many keys keyRows reads at once.
const fetchParallel = 8

// keyRows makes the table rows of listed keys. A list item has neither the key type nor, for "key list", the
// version, so each key is read (fetchParallel at a time); a key that cannot be read, because it was deleted
// meanwhile or the principal may not read it, shows "?" where the item does not say.
func keyRows(ctx context.Context, kc *azkeys.Client, items []*azkeys.KeyProperties) []keyRow {
	rows := make([]keyRow, len(items))
	sem := make(chan struct{}, fetchParallel)
	var wg sync.WaitGroup
	for i, item := range items {
		if item.KID == nil {
			continue
		}
		name, version := item.KID.Name(), item.KID.Version()
		rows[i] = keyRow{name: name, kty: "?", version: version}
		if item.Attributes != nil {
			rows[i].enabled, rows[i].created = formatBool(item.Attributes.Enabled), formatTime(item.Attributes.Created)
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			k, err := kc.GetKey(ctx, name, version, nil)
			if err != nil || k.Key == nil || k.Key.KID == nil {
				if rows[i].version == "" {
					rows[i].version = "?"
				}
				return
			}
			rows[i].kty, rows[i].version = string(deref(k.Key.Kty)), k.Key.KID.Version()
			if k.Attributes != nil {
				rows[i].enabled, rows[i].created = formatBool(k.Attributes.Enabled), formatTime(k.Attributes.Created)
			}
		})
	}
	wg.Wait()
	return rows
}

// allPages reads every page of p and returns the items that items picks from each.
func allPages[R, T any](ctx context.Context, p *runtime.Pager[R], items func(R) []T) ([]T, error) {
	var all []T
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		all = append(all, items(page)...)
	}
	return all, nil
}
