#include "frvpx.h"

#include <string.h>

#include <vpx/vp8cx.h>
#include <vpx/vp8dx.h>

vpx_codec_err_t frvpx_dec_init(frvpx_dec *d, unsigned int threads) {
	vpx_codec_dec_cfg_t cfg;
	vpx_codec_err_t rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.threads = threads;
	rc = vpx_codec_dec_init(&d->ctx, vpx_codec_vp8_dx(), &cfg, 0);
	if (rc == VPX_CODEC_OK) {
		d->inited = 1;
	}
	return rc;
}

vpx_codec_err_t frvpx_dec_decode(frvpx_dec *d, const uint8_t *data, size_t size) {
	vpx_codec_iter_t iter = NULL;
	vpx_image_t *img;
	vpx_codec_err_t rc;

	d->img = NULL;
	d->corrupted = 0;
	rc = vpx_codec_decode(&d->ctx, data, (unsigned int)size, NULL, 0);
	// Drain the picture queue in every case; VP8 yields at most one picture.
	while ((img = vpx_codec_get_frame(&d->ctx, &iter)) != NULL) {
		d->img = img;
	}
	if (rc != VPX_CODEC_OK) {
		d->img = NULL;
		return rc;
	}
	if (d->img != NULL) {
		int corrupted = 0;
		if (vpx_codec_control(&d->ctx, VP8D_GET_FRAME_CORRUPTED, &corrupted) == VPX_CODEC_OK) {
			d->corrupted = corrupted;
		}
	}
	return VPX_CODEC_OK;
}

void frvpx_dec_destroy(frvpx_dec *d) {
	if (d->inited) {
		vpx_codec_destroy(&d->ctx);
		d->inited = 0;
	}
	d->img = NULL;
}

#define FRVPX_CTRL(e, id, val)                                   \
	do {                                                         \
		vpx_codec_err_t crc = vpx_codec_control(&(e)->ctx, id, val); \
		if (crc != VPX_CODEC_OK) {                               \
			(e)->failed_ctrl = #id;                              \
			return crc;                                          \
		}                                                        \
	} while (0)

vpx_codec_err_t frvpx_enc_init(frvpx_enc *e, const frvpx_enc_params *p) {
	vpx_codec_enc_cfg_t *cfg = &e->cfg;
	vpx_codec_err_t rc;
	int partitions;
	unsigned int max_intra;

	frvpx_enc_destroy(e);
	e->failed_ctrl = NULL;

	rc = vpx_codec_enc_config_default(vpx_codec_vp8_cx(), cfg, 0);
	if (rc != VPX_CODEC_OK) {
		return rc;
	}
	// VP8 has a single usage (0); realtime mode is selected per frame by the VPX_DL_REALTIME
	// deadline, which switches libvpx to its realtime compressor speed.
	cfg->g_usage = 0;
	cfg->g_w = p->width;
	cfg->g_h = p->height;
	cfg->g_threads = p->threads;
	cfg->g_timebase.num = 1;
	cfg->g_timebase.den = 90000;
	cfg->g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
	cfg->g_pass = VPX_RC_ONE_PASS;
	cfg->g_lag_in_frames = 0;

	cfg->rc_end_usage = VPX_CBR;
	cfg->rc_target_bitrate = p->bitrate_kbps;
	cfg->rc_min_quantizer = 4;
	cfg->rc_max_quantizer = 56;
	cfg->rc_undershoot_pct = 100;
	cfg->rc_overshoot_pct = 15;
	cfg->rc_buf_initial_sz = 500;
	cfg->rc_buf_optimal_sz = 600;
	cfg->rc_buf_sz = 1000;
	cfg->rc_dropframe_thresh = p->drop_frame_thresh;
	cfg->rc_resize_allowed = 0;

	cfg->kf_mode = VPX_KF_AUTO;
	cfg->kf_min_dist = 0;
	cfg->kf_max_dist = p->kf_max_dist;

	rc = vpx_codec_enc_init(&e->ctx, vpx_codec_vp8_cx(), cfg, 0);
	if (rc != VPX_CODEC_OK) {
		return rc;
	}
	e->inited = 1;

	// Several token partitions let a multi-threaded receiver decode in parallel; with one
	// encoder thread a single partition is the cheapest.
	partitions = VP8_ONE_TOKENPARTITION;
	if (p->threads >= 8) {
		partitions = VP8_EIGHT_TOKENPARTITION;
	} else if (p->threads >= 4) {
		partitions = VP8_FOUR_TOKENPARTITION;
	} else if (p->threads >= 2) {
		partitions = VP8_TWO_TOKENPARTITION;
	}
	// Cap key frames at half the optimal buffer (as WebRTC does): 0.5 * 600 ms * fps / 10.
	max_intra = 600u / 2u * p->fps / 10u;
	if (max_intra < 300) {
		max_intra = 300;
	}

	FRVPX_CTRL(e, VP8E_SET_CPUUSED, p->cpu_used);
	FRVPX_CTRL(e, VP8E_SET_NOISE_SENSITIVITY, 0u);
	FRVPX_CTRL(e, VP8E_SET_STATIC_THRESHOLD, 1u);
	FRVPX_CTRL(e, VP8E_SET_TOKEN_PARTITIONS, partitions);
	FRVPX_CTRL(e, VP8E_SET_ENABLEAUTOALTREF, 0u);
	FRVPX_CTRL(e, VP8E_SET_MAX_INTRA_BITRATE_PCT, max_intra);

	memset(&e->img, 0, sizeof(e->img));
	e->img.fmt = VPX_IMG_FMT_I420;
	e->img.cs = VPX_CS_BT_601;
	e->img.range = VPX_CR_STUDIO_RANGE;
	e->img.w = e->img.d_w = e->img.r_w = p->width;
	e->img.h = e->img.d_h = e->img.r_h = p->height;
	e->img.x_chroma_shift = 1;
	e->img.y_chroma_shift = 1;
	e->img.bps = 12;
	e->nout = 0;
	return VPX_CODEC_OK;
}

vpx_codec_err_t frvpx_enc_set_bitrate(frvpx_enc *e, unsigned int kbps) {
	unsigned int old = e->cfg.rc_target_bitrate;
	vpx_codec_err_t rc;

	if (!e->inited) {
		return VPX_CODEC_OK; // applied by the next frvpx_enc_init
	}
	e->cfg.rc_target_bitrate = kbps;
	rc = vpx_codec_enc_config_set(&e->ctx, &e->cfg);
	if (rc != VPX_CODEC_OK) {
		e->cfg.rc_target_bitrate = old;
	}
	return rc;
}

vpx_codec_err_t frvpx_enc_encode(frvpx_enc *e, const uint8_t *y, const uint8_t *u, const uint8_t *v,
                                 int ystride, int ustride, int vstride, int64_t pts, unsigned long duration,
                                 int force_key) {
	vpx_codec_iter_t iter = NULL;
	const vpx_codec_cx_pkt_t *pkt;
	vpx_codec_err_t rc;

	e->nout = 0;
	// The planes may point into Go memory: they are used only during this call (libvpx copies
	// the picture into its lookahead buffer because g_lag_in_frames is 0) and cleared after it.
	e->img.planes[VPX_PLANE_Y] = (unsigned char *)y;
	e->img.planes[VPX_PLANE_U] = (unsigned char *)u;
	e->img.planes[VPX_PLANE_V] = (unsigned char *)v;
	e->img.stride[VPX_PLANE_Y] = ystride;
	e->img.stride[VPX_PLANE_U] = ustride;
	e->img.stride[VPX_PLANE_V] = vstride;
	rc = vpx_codec_encode(&e->ctx, &e->img, (vpx_codec_pts_t)pts, duration,
	                      force_key ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME);
	e->img.planes[VPX_PLANE_Y] = NULL;
	e->img.planes[VPX_PLANE_U] = NULL;
	e->img.planes[VPX_PLANE_V] = NULL;
	if (rc != VPX_CODEC_OK) {
		return rc;
	}
	while ((pkt = vpx_codec_get_cx_data(&e->ctx, &iter)) != NULL) {
		if (pkt->kind != VPX_CODEC_CX_FRAME_PKT) {
			continue;
		}
		if (e->nout >= FRVPX_MAX_OUT) {
			return VPX_CODEC_ERROR;
		}
		e->out_buf[e->nout] = pkt->data.frame.buf;
		e->out_sz[e->nout] = pkt->data.frame.sz;
		e->out_key[e->nout] = (pkt->data.frame.flags & VPX_FRAME_IS_KEY) != 0;
		e->nout++;
	}
	return VPX_CODEC_OK;
}

void frvpx_enc_destroy(frvpx_enc *e) {
	if (e->inited) {
		vpx_codec_destroy(&e->ctx);
		e->inited = 0;
	}
	e->nout = 0;
}
