// Command attach drives a browser-broker lease with chromedp over CDP: it signs in on the
// fixture site, scrapes, completes an OAuth popup and downloads a file, then waits for the
// lease's end to close its socket. Every line it prints is one JSON object.
//
//	browserbroker-attach-chromedp CONNECT_URL SITE_URL
//
// The connect URL is a browser-level DevTools WebSocket; the broker serves no /json/version,
// so the allocator must dial it as it is (remote.NoModifyURL).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
)

func print(event string, fields map[string]any) {
	out := map[string]any{"event": event}
	for k, v := range fields {
		out[k] = v
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: browserbroker-attach-chromedp CONNECT_URL SITE_URL")
		os.Exit(2)
	}
	if err := run(os.Args[1], strings.TrimSuffix(os.Args[2], "/")); err != nil {
		print("error", map[string]any{"message": err.Error()})
		os.Exit(1)
	}
}

func run(connectURL, site string) error {
	allocCtx, cancelAlloc := remote.NewAllocator(context.Background(), connectURL, remote.NoModifyURL)
	defer cancelAlloc()
	// The first context connects (and opens a tab in the default browser context); the
	// scenario works in a browser context of its own.
	first, cancelFirst := chromedp.NewContext(allocCtx)
	defer cancelFirst()
	if err := chromedp.Do(first); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	ctx, cancel := chromedp.NewContext(first, chromedp.WithNewBrowserContext())
	defer cancel()
	limited, cancelLimited := context.WithTimeout(ctx, 60*time.Second)
	defer cancelLimited()
	if err := scenario(limited, site); err != nil {
		return err
	}
	return reportClose(ctx)
}

func scenario(ctx context.Context, site string) error {
	text := func(sel string) (string, error) { return chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel))) }

	if err := chromedp.Do(ctx,
		chromedp.Navigate(site+"/login.html"),
		chromedp.SendKeys(chromedp.CSS("#user"), "ada"),
		chromedp.SendKeys(chromedp.CSS("#password"), "secret"),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#who")),
	); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	who, err := text("#who")
	if err != nil {
		return err
	}
	stored, err := text("#stored")
	if err != nil {
		return err
	}
	print("login", map[string]any{"who": who, "stored": stored})

	if err := chromedp.Do(ctx, chromedp.Navigate(site+"/app.html")); err != nil {
		return err
	}
	opened := chromedp.WaitNewTarget(ctx, func(info *target.Info) bool { return info.Type == "page" })
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#oauth"))); err != nil {
		return fmt.Errorf("popup: %w", err)
	}
	popupID, ok := <-opened
	if !ok {
		return errors.New("popup: no new target")
	}
	popup, cancelPopup := chromedp.NewContext(ctx, chromedp.WithTargetID(popupID))
	defer cancelPopup()
	if err := chromedp.Do(popup, chromedp.WaitVisible(chromedp.CSS("#approve"))); err != nil {
		return fmt.Errorf("popup: %w", err)
	}
	location, err := chromedp.Run(popup, chromedp.Location())
	if err != nil {
		return err
	}
	title, err := chromedp.Run(popup, chromedp.Title())
	if err != nil {
		return err
	}
	print("popup", map[string]any{"url": location, "title": title})
	// The popup closes itself as it is clicked: its target may go before the click returns.
	if err := chromedp.Do(popup, chromedp.Click(chromedp.CSS("#approve"))); err != nil &&
		!errors.Is(err, chromedp.ErrTargetDetached) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("approve: %w", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		"document.getElementById('status').textContent.startsWith('connected')")); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	status, err := text("#status")
	if err != nil {
		return err
	}
	print("status", map[string]any{"text": status})

	// The file is written in the lease's folder on the broker's host, whatever downloadPath
	// says: the browser's events tell the client its name, size and state.
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior:         browser.SetDownloadBehaviorBehaviorAllowAndName,
		BrowserContextID: chromedp.FromContext(ctx).BrowserContextID,
		DownloadPath:     "/ignored/by/the/broker",
		EventsEnabled:    new(true),
	}); err != nil {
		return fmt.Errorf("download behavior: %w", err)
	}
	began := chromedp.BrowserEvents(ctx, browser.DownloadWillBegin)
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	if err := chromedp.Do(ctx, chromedp.Navigate(site+"/download.html"), chromedp.Click(chromedp.CSS("#file"))); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	var start browser.EventDownloadWillBegin
	for ev, err := range began {
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		start = ev
		break
	}
	var end browser.EventDownloadProgress
	for ev, err := range progress {
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		if ev.GUID == start.GUID && ev.State != browser.DownloadProgressStateInProgress {
			end = ev
			break
		}
	}
	print("download", map[string]any{
		"filename": start.SuggestedFilename, "url": start.URL, "guid": start.GUID,
		"state": string(end.State), "bytes": int64(end.ReceivedBytes),
	})
	return nil
}

var closeCode = regexp.MustCompile(`websocket closed with the code (\d+): (.*)`)

// reportClose waits for the lease's end to close the socket; chromedp's error for a call after
// that carries the close code and reason.
func reportClose(ctx context.Context) error {
	print("ready", nil)
	c := chromedp.FromContext(ctx)
	select {
	case <-c.Browser.LostConnection:
	case <-time.After(120 * time.Second):
		return errors.New("the socket stayed open for 120 s")
	}
	// (the context of the browser is cancelled by then: ask without its cancellation)
	_, err := chromedp.CallBrowser(context.WithoutCancel(ctx), browser.GetVersion, cdp.Empty{})
	if err == nil {
		return errors.New("the browser still answers after the socket closed")
	}
	found := closeCode.FindStringSubmatch(err.Error())
	if found == nil {
		return fmt.Errorf("closed without a close code: %w", err)
	}
	code, _ := strconv.Atoi(found[1])
	reason := strings.TrimSuffix(found[2], ": "+context.Canceled.Error())
	print("closed", map[string]any{"code": code, "reason": reason})
	return nil
}
