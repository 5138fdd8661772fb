package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
)

var (
	colLuaq  = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	colAsynq = color.RGBA{0xff, 0x7f, 0x0e, 0xff}
	colText  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	colGrid  = color.RGBA{0xcc, 0xcc, 0xcc, 0xff}
)

type barGroup struct {
	label       string
	luaq, asynq *float64
}

// writePNG draws two panels of grouped bars (luaq vs asynq): throughput of
// the four throughput scenarios and the p99 latencies. Each group's bars are
// scaled to that group's larger value; the numbers are printed on the bars.
func (rep *report) writePNG(path string) error {
	const W, H = 1000, 760
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fillRect(img, 0, 0, W, H, color.White)
	title := fmt.Sprintf("LUAQ VS ASYNQ - SCALE %g - REDIS %s - ASYNQ %s", rep.Scale, rep.RedisVersion, rep.AsynqVersion)
	drawText(img, 20, 16, 2, colText, title)
	// Legend.
	fillRect(img, W-260, 50, 18, 18, colLuaq)
	drawText(img, W-234, 52, 2, colText, "LUAQ")
	fillRect(img, W-150, 50, 18, 18, colAsynq)
	drawText(img, W-124, 52, 2, colText, "ASYNQ")

	get := func(name, metric string) (*float64, *float64) {
		s := rep.scenario(name)
		if s == nil {
			return nil, nil
		}
		return val(s.Luaq, metric), val(s.Asynq, metric)
	}
	var tp []barGroup
	for _, g := range []struct{ name, label string }{
		{"enqueue", "ENQUEUE"}, {"batch", "BATCH 100 VS 1"}, {"drain", "DRAIN"}, {"e2e", "END-TO-END"},
	} {
		l, a := get(g.name, "")
		tp = append(tp, barGroup{g.label, l, a})
	}
	var lat []barGroup
	for _, g := range []struct{ name, label string }{{"idle", "IDLE P99"}, {"scheduled", "SCHEDULED P99"}} {
		l, a := get(g.name, "p99_ms")
		lat = append(lat, barGroup{g.label, l, a})
	}
	drawPanel(img, image.Rect(20, 90, W-20, 420), "THROUGHPUT, TASKS/S (HIGHER IS BETTER; BARS SCALED PER GROUP)", tp)
	drawPanel(img, image.Rect(20, 450, W-20, H-20), "LATENCY P99, MS (LOWER IS BETTER; BARS SCALED PER GROUP)", lat)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func drawPanel(img *image.RGBA, r image.Rectangle, title string, groups []barGroup) {
	drawText(img, r.Min.X, r.Min.Y, 2, colText, title)
	top, bottom := r.Min.Y+40, r.Max.Y-50 // bar area; labels below
	fillRect(img, r.Min.X, bottom, r.Dx(), 2, colGrid)
	if len(groups) == 0 {
		return
	}
	gw := r.Dx() / len(groups)
	barW := min(70, gw/4)
	for i, g := range groups {
		gx := r.Min.X + i*gw
		maxV := 0.0
		for _, v := range []*float64{g.luaq, g.asynq} {
			if v != nil && *v > maxV {
				maxV = *v
			}
		}
		cx := gx + gw/2
		for j, b := range []struct {
			v *float64
			c color.Color
		}{{g.luaq, colLuaq}, {g.asynq, colAsynq}} {
			x := cx - barW - 4 + j*(barW+8)
			label := "N/A"
			h := 0
			if b.v != nil {
				label = num(b.v)
				if maxV > 0 {
					h = max(int(float64(bottom-top-24)**b.v/maxV), 2)
				}
			}
			fillRect(img, x, bottom-h, barW, h, b.c)
			drawText(img, x+barW/2-textWidth(label, 2)/2, bottom-h-20, 2, colText, label)
		}
		drawText(img, cx-textWidth(g.label, 2)/2, bottom+10, 2, colText, g.label)
		if g.luaq != nil && g.asynq != nil && *g.asynq != 0 {
			rl := fmt.Sprintf("LUAQ/ASYNQ %sx", num(fp(*g.luaq / *g.asynq)))
			drawText(img, cx-textWidth(rl, 2)/2, bottom+30, 2, colText, rl)
		}
	}
}
