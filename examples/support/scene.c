/* Synthetic aerial scenes for the segmentation examples: ground, water, roads with lane
 * marks, parking lots, buildings with cast shadows, cars and trees, painted in that
 * order into an RGB image and a 7-class label map. A seed is a scene: the generator
 * has its own counter-based RNG and no global state, so it is safe across threads. */
#include "kx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const uint8_t kx_scene_palette[KX_SCENE_NUM_CLASSES][3] = {
    {150, 130, 90}, {85, 85, 85}, {220, 60, 50}, {40, 150, 40}, {40, 100, 220}, {255, 220, 0}, {120, 40, 160},
};

static const char *const class_names[KX_SCENE_NUM_CLASSES] = {"ground", "road",  "building", "tree",
                                                                 "water",  "car",   "shadow"};

const char *kx_scene_class_name(int cls) {
    return cls >= 0 && cls < KX_SCENE_NUM_CLASSES ? class_names[cls] : "?";
}

uint32_t kx_scene_colour(int cls) {
    if (cls < 0 || cls >= KX_SCENE_NUM_CLASSES) return 0;
    const uint8_t *c = kx_scene_palette[cls];
    return (uint32_t)c[0] << 16 | (uint32_t)c[1] << 8 | c[2];
}

/* ---- randomness: splitmix64 over a counter, and a hash of (key, x, y) for per-pixel grain */

typedef struct {
    uint64_t s;
} rng;

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint64_t rng_next(rng *r) { return mix64(r->s += 0x9E3779B97F4A7C15ull); }
static inline float rng_unit(rng *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }
static inline float rng_uniform(rng *r, float a, float b) { return a + (b - a) * rng_unit(r); }
static inline int rng_below(rng *r, int n) { return (int)((rng_next(r) >> 33) % (uint64_t)n); }
static inline bool rng_chance(rng *r, float p) { return rng_unit(r) < p; }
static inline float hash01(uint64_t key, uint32_t x, uint32_t y) {
    return (float)(mix64(key ^ (((uint64_t)y << 32) | x) * 0xD6E8FEB86659FD93ull) >> 40) * (1.0f / 16777216.0f);
}
/* Three draws in a fixed order (the order of initializers and arguments is unspecified in C). */
static inline void rng_colour(rng *r, float out[3], float r0, float r1, float g0, float g1, float b0, float b1) {
    out[0] = rng_uniform(r, r0, r1);
    out[1] = rng_uniform(r, g0, g1);
    out[2] = rng_uniform(r, b0, b1);
}
static inline float clampf(float v, float lo, float hi) { /* two selects the compiler turns into min/max */
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* ---- the scene being painted -------------------------------------------------------- */

#define MAX_ROADS 4
#define ROAD_PTS 33
#define MAX_CARS 512
#define MAX_CROWNS 384

typedef struct {
    int n;
    float x[ROAD_PTS], y[ROAD_PTS];
    float hw; /* half width */
} road;

/* An oriented box: centre, unit direction of its length (c,s), half length and half width. */
typedef struct {
    float cx, cy, c, s, hl, hw;
} obox;

typedef struct {
    float x, y, r;
    float c3, s3, c5, s5; /* radius wobble r(t) = r (1 + c3 cos 3t - s3 sin 3t + c5 cos 5t - s5 sin 5t) */
} crown;

typedef struct {
    int H, W;
    size_t HW;
    float *rgb;
    uint8_t *lab, *shade;
    float *dist, *along, *noise, *lattice, *xfade;
    int *xcell;
    rng r;
    uint64_t key; /* per-scene hash key */
    float sx, sy; /* unit direction shadows fall in */
    float area;   /* H*W in units of 128x128 */
    road roads[MAX_ROADS];
    int nroads;
    obox cars[MAX_CARS];
    int ncars;
    crown crowns[MAX_CROWNS];
    int ncrowns;
} scene;

static inline void put(scene *s, size_t p, float r, float g, float b) {
    s->rgb[p] = r;
    s->rgb[s->HW + p] = g;
    s->rgb[2 * s->HW + p] = b;
}
static inline void blend(scene *s, size_t p, float r, float g, float b, float a) {
    float *c = s->rgb;
    c[p] += a * (r - c[p]);
    c[s->HW + p] += a * (g - c[s->HW + p]);
    c[2 * s->HW + p] += a * (b - c[2 * s->HW + p]);
}

/* Shadows darken and cool what they fall on; on open ground or road they are their own class. */
#define SHADOW_R 0.46f
#define SHADOW_G 0.49f
#define SHADOW_B 0.58f
static void shade_pixel(scene *s, size_t p) {
    uint8_t l = s->lab[p];
    if (s->shade[p] || l == KX_SCENE_BUILDING || l == KX_SCENE_TREE) return;
    s->shade[p] = 1;
    s->rgb[p] *= SHADOW_R;
    s->rgb[s->HW + p] *= SHADOW_G;
    s->rgb[2 * s->HW + p] *= SHADOW_B;
    if (l == KX_SCENE_GROUND || l == KX_SCENE_ROAD) s->lab[p] = KX_SCENE_SHADOW;
}

/* Pixel bounds of a box grown by `pad`, clipped to the image; false when nothing is left. */
static bool obox_bounds(const scene *s, const obox *b, float pad, int *x0, int *y0, int *x1, int *y1) {
    float ex = fabsf(b->c) * b->hl + fabsf(b->s) * b->hw + pad;
    float ey = fabsf(b->s) * b->hl + fabsf(b->c) * b->hw + pad;
    *x0 = (int)floorf(b->cx - ex);
    *x1 = (int)ceilf(b->cx + ex);
    *y0 = (int)floorf(b->cy - ey);
    *y1 = (int)ceilf(b->cy + ey);
    if (*x0 < 0) *x0 = 0;
    if (*y0 < 0) *y0 = 0;
    if (*x1 > s->W - 1) *x1 = s->W - 1;
    if (*y1 > s->H - 1) *y1 = s->H - 1;
    return *x0 <= *x1 && *y0 <= *y1;
}

/* Coordinates of pixel centre (x,y) in the box's frame: u along its length, v across. */
static inline void obox_local(const obox *b, int x, int y, float *u, float *v) {
    float dx = (float)x + 0.5f - b->cx, dy = (float)y + 0.5f - b->cy;
    *u = dx * b->c + dy * b->s;
    *v = -dx * b->s + dy * b->c;
}

/* True when every pixel of the box grown by pad has a label allowed by the bit mask. */
static bool obox_fits(const scene *s, const obox *b, float pad, unsigned allowed) {
    int x0, y0, x1, y1;
    if (!obox_bounds(s, b, pad, &x0, &y0, &x1, &y1)) return false;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float u, v;
            obox_local(b, x, y, &u, &v);
            if (fabsf(u) <= b->hl + pad && fabsf(v) <= b->hw + pad && !(allowed >> s->lab[(size_t)y * s->W + x] & 1u))
                return false;
        }
    return true;
}
#define BIT(c) (1u << (c))

/* Smooth value noise in [0,1] on a lattice of `cell` pixels (cell >= 8). */
static void value_noise(scene *s, int cell, uint64_t salt, float *out) {
    int gw = s->W / cell + 2, gh = s->H / cell + 2;
    uint64_t key = s->key ^ mix64(salt);
    for (int j = 0; j < gh; j++)
        for (int i = 0; i < gw; i++) s->lattice[(size_t)j * gw + i] = hash01(key, (uint32_t)i, (uint32_t)j);
    float inv = 1.0f / (float)cell;
    /* The column weights are the same on every row: compute them once. */
    for (int x = 0; x < s->W; x++) {
        float gx = ((float)x + 0.5f) * inv;
        int i = (int)gx;
        float fx = gx - (float)i;
        s->xcell[x] = i;
        s->xfade[x] = fx * fx * (3 - 2 * fx);
    }
    for (int y = 0; y < s->H; y++) {
        float gy = ((float)y + 0.5f) * inv;
        int j = (int)gy;
        float fy = gy - (float)j;
        fy = fy * fy * (3 - 2 * fy);
        const float *r0 = s->lattice + (size_t)j * gw, *r1 = r0 + gw;
        float *o = out + (size_t)y * s->W;
        for (int x = 0; x < s->W; x++) {
            int i = s->xcell[x];
            float fx = s->xfade[x];
            float a = r0[i] + fx * (r0[i + 1] - r0[i]);
            float b = r1[i] + fx * (r1[i + 1] - r1[i]);
            o[x] = a + fy * (b - a);
        }
    }
}

/* ---- ground and water -------------------------------------------------------------- */

static void paint_ground(scene *s) {
    float grass[3], soil[3];
    rng_colour(&s->r, grass, 0.26f, 0.36f, 0.38f, 0.48f, 0.16f, 0.24f);
    rng_colour(&s->r, soil, 0.46f, 0.56f, 0.40f, 0.47f, 0.28f, 0.34f);
    float dry = rng_uniform(&s->r, 0.3f, 0.7f); /* how much bare soil shows */
    value_noise(s, 32, 1, s->noise);
    value_noise(s, 8, 2, s->dist);
    for (size_t p = 0; p < s->HW; p++) {
        float t = clampf((s->noise[p] - dry) * 4.0f + 0.5f, 0, 1);
        t = t * t * (3 - 2 * t);
        float lum = 0.88f + 0.24f * s->dist[p];
        put(s, p, lum * (grass[0] + t * (soil[0] - grass[0])), lum * (grass[1] + t * (soil[1] - grass[1])),
            lum * (grass[2] + t * (soil[2] - grass[2])));
        s->lab[p] = KX_SCENE_GROUND;
    }
}

/* Squared distance from each pixel to a polyline (in s->dist) and the arc length of its
 * nearest point (in s->along), computed only near the line. */
static void line_field(scene *s, const road *rd, float reach) {
    for (size_t p = 0; p < s->HW; p++) s->dist[p] = 1e9f;
    float s0 = 0;
    for (int k = 0; k + 1 < rd->n; k++) {
        float ax = rd->x[k], ay = rd->y[k], bx = rd->x[k + 1], by = rd->y[k + 1];
        float dx = bx - ax, dy = by - ay, len = sqrtf(dx * dx + dy * dy);
        if (len < 1e-4f) continue;
        float ux = dx / len, uy = dy / len;
        int x0 = (int)floorf(fminf(ax, bx) - reach), x1 = (int)ceilf(fmaxf(ax, bx) + reach);
        int y0 = (int)floorf(fminf(ay, by) - reach), y1 = (int)ceilf(fmaxf(ay, by) + reach);
        if (x0 < 0) x0 = 0;
        if (y0 < 0) y0 = 0;
        if (x1 > s->W - 1) x1 = s->W - 1;
        if (y1 > s->H - 1) y1 = s->H - 1;
        for (int y = y0; y <= y1; y++) {
            /* On this row only an x interval lies within reach of the infinite line. */
            float py0 = (float)y + 0.5f - ay;
            int xa = x0, xb = x1;
            if (fabsf(uy) > 1e-4f) {
                float e0 = (py0 * ux - reach) / uy, e1 = (py0 * ux + reach) / uy;
                float lo = fminf(e0, e1) + ax - 0.5f, hi = fmaxf(e0, e1) + ax - 0.5f;
                if (lo > (float)xa) xa = (int)floorf(lo);
                if (hi < (float)xb) xb = (int)ceilf(hi);
            }
            for (int x = xa; x <= xb; x++) {
                float px = (float)x + 0.5f - ax, py = py0;
                float t = clampf(px * ux + py * uy, 0, len);
                float qx = px - t * ux, qy = py - t * uy;
                float d = qx * qx + qy * qy;
                size_t p = (size_t)y * s->W + x;
                if (d < s->dist[p]) {
                    s->dist[p] = d;
                    s->along[p] = s0 + t;
                }
            }
        }
        s0 += len;
    }
}

/* A point on the image border, on side 0..3 (top, right, bottom, left). */
static void border_point(scene *s, int side, float *x, float *y) {
    float t = rng_uniform(&s->r, 0.15f, 0.85f);
    switch (side & 3) {
    case 0: *x = t * s->W, *y = -4; break;
    case 1: *x = s->W + 4.0f, *y = t * s->H; break;
    case 2: *x = t * s->W, *y = s->H + 4.0f; break;
    default: *x = -4, *y = t * s->H; break;
    }
}

/* A straight line through the scene, or a quadratic curve between two borders. */
static void make_path(scene *s, road *rd, bool curved, float angle_hint) {
    if (!curved) {
        float cx = rng_uniform(&s->r, 0.2f, 0.8f) * s->W, cy = rng_uniform(&s->r, 0.2f, 0.8f) * s->H;
        float L = (float)(s->H + s->W);
        rd->n = 2;
        rd->x[0] = cx - L * cosf(angle_hint), rd->y[0] = cy - L * sinf(angle_hint);
        rd->x[1] = cx + L * cosf(angle_hint), rd->y[1] = cy + L * sinf(angle_hint);
        return;
    }
    int a = rng_below(&s->r, 4), b = (a + 1 + rng_below(&s->r, 3)) & 3;
    float ax, ay, bx, by;
    border_point(s, a, &ax, &ay);
    border_point(s, b, &bx, &by);
    float cx = rng_uniform(&s->r, 0.1f, 0.9f) * s->W, cy = rng_uniform(&s->r, 0.1f, 0.9f) * s->H;
    rd->n = ROAD_PTS;
    for (int i = 0; i < ROAD_PTS; i++) {
        float t = (float)i / (ROAD_PTS - 1), u = 1 - t;
        rd->x[i] = u * u * ax + 2 * u * t * cx + t * t * bx;
        rd->y[i] = u * u * ay + 2 * u * t * cy + t * t * by;
    }
}

static void paint_water(scene *s) {
    float n_bodies = s->area * rng_uniform(&s->r, 0.0f, 0.9f);
    int count = (int)n_bodies + (rng_chance(&s->r, n_bodies - floorf(n_bodies)) ? 1 : 0);
    float deep[3];
    rng_colour(&s->r, deep, 0.06f, 0.12f, 0.18f, 0.26f, 0.28f, 0.38f);
    float shallow[3] = {deep[0] + 0.10f, deep[1] + 0.12f, deep[2] + 0.06f};
    for (int k = 0; k < count; k++) {
        value_noise(s, 16, 10 + (uint64_t)k, s->noise);
        if (rng_chance(&s->r, 0.35f)) { /* a river */
            road rv;
            rv.hw = rng_uniform(&s->r, 5, 10);
            make_path(s, &rv, true, 0);
            line_field(s, &rv, rv.hw * 1.5f + 2);
            for (size_t p = 0; p < s->HW; p++) {
                float edge = rv.hw * (0.8f + 0.5f * s->noise[p]);
                if (s->dist[p] >= edge * edge) continue;
                float depth = clampf((edge - sqrtf(s->dist[p])) / 4.0f, 0, 1);
                put(s, p, shallow[0] + depth * (deep[0] - shallow[0]), shallow[1] + depth * (deep[1] - shallow[1]),
                    shallow[2] + depth * (deep[2] - shallow[2]));
                s->lab[p] = KX_SCENE_WATER;
            }
        } else { /* a pond with a wobbly shore */
            float cx = rng_unit(&s->r) * s->W, cy = rng_unit(&s->r) * s->H;
            float R = rng_uniform(&s->r, 10, 24), inv = 1.0f / R;
            int x0 = (int)fmaxf(0, cx - 1.5f * R), x1 = (int)fminf((float)s->W - 1, cx + 1.5f * R);
            int y0 = (int)fmaxf(0, cy - 1.5f * R), y1 = (int)fminf((float)s->H - 1, cy + 1.5f * R);
            for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++) {
                    size_t p = (size_t)y * s->W + x;
                    float dx = (float)x + 0.5f - cx, dy = (float)y + 0.5f - cy;
                    float q = sqrtf(dx * dx + dy * dy) * inv + 0.6f * (s->noise[p] - 0.5f);
                    if (q >= 1) continue;
                    float depth = clampf((1 - q) * 3, 0, 1);
                    put(s, p, shallow[0] + depth * (deep[0] - shallow[0]),
                        shallow[1] + depth * (deep[1] - shallow[1]), shallow[2] + depth * (deep[2] - shallow[2]));
                    s->lab[p] = KX_SCENE_WATER;
                }
        }
    }
}

/* ---- roads and parking lots -------------------------------------------------------- */

static void paint_road(scene *s, const road *rd) {
    float base = rng_uniform(&s->r, 0.30f, 0.42f), warm = rng_uniform(&s->r, -0.02f, 0.02f);
    bool yellow = rng_chance(&s->r, 0.3f), edges = rng_chance(&s->r, 0.6f);
    float dash = rng_uniform(&s->r, 3, 5), period = dash + rng_uniform(&s->r, 3, 6);
    line_field(s, rd, rd->hw + 1.5f);
    float reach2 = (rd->hw + 0.5f) * (rd->hw + 0.5f);
    for (size_t p = 0; p < s->HW; p++) {
        if (s->dist[p] >= reach2) continue;
        float d = sqrtf(s->dist[p]);
        float lum = base * (0.93f + 0.14f * hash01(s->key, (uint32_t)p, 11));
        float r = lum + warm, g = lum, b = lum - warm + 0.01f;
        if (d < 0.55f && fmodf(s->along[p], period) < dash) {
            r = 0.85f, g = yellow ? 0.72f : 0.85f, b = yellow ? 0.25f : 0.82f;
        } else if (edges && fabsf(d - (rd->hw - 1.3f)) < 0.45f) {
            r = g = b = 0.68f;
        }
        /* The asphalt edge is blended over what lies beneath; its label is a hard cut. */
        blend(s, p, r, g, b, clampf(rd->hw + 0.5f - d, 0, 1));
        if (d < rd->hw) s->lab[p] = KX_SCENE_ROAD;
    }
}

static void paint_roads(scene *s) {
    float angle = rng_uniform(&s->r, 0, 3.14159265f);
    int want = 1 + (rng_chance(&s->r, 0.7f) ? 1 : 0) + (rng_chance(&s->r, 0.35f * s->area) ? 1 : 0);
    if (s->area > 2) want += 1;
    if (want > MAX_ROADS) want = MAX_ROADS;
    for (int k = 0; k < want; k++) {
        road *rd = &s->roads[s->nroads++];
        rd->hw = rng_uniform(&s->r, 4.5f, 7.0f);
        /* Streets mostly meet at right angles; some wind. */
        bool curved = rng_chance(&s->r, k == 0 ? 0.3f : 0.45f);
        make_path(s, rd, curved, angle + (k % 2) * 1.5708f + rng_uniform(&s->r, -0.12f, 0.12f));
        paint_road(s, rd);
    }
}

static bool place_car(scene *s, float cx, float cy, float c, float sn, unsigned allowed);

static void paint_lots(scene *s) {
    float n_lots = s->area * rng_uniform(&s->r, 0.2f, 1.1f);
    int count = (int)n_lots + (rng_chance(&s->r, n_lots - floorf(n_lots)) ? 1 : 0);
    float ang = rng_uniform(&s->r, 0, 3.14159265f);
    if (s->nroads) { /* align lots with the first road */
        const road *rd = &s->roads[0];
        ang = atan2f(rd->y[rd->n - 1] - rd->y[0], rd->x[rd->n - 1] - rd->x[0]);
    }
    for (int k = 0; k < count; k++) {
        const float stall = 5.0f, depth = 10.0f;
        obox lot = {0, 0, cosf(ang), sinf(ang), 0, 0};
        lot.hl = stall * (float)(2 + rng_below(&s->r, 4));
        lot.hw = depth + rng_uniform(&s->r, 2.5f, 4.5f);
        bool ok = false;
        for (int tries = 0; tries < 24 && !ok; tries++) {
            lot.cx = rng_unit(&s->r) * s->W, lot.cy = rng_unit(&s->r) * s->H;
            ok = obox_fits(s, &lot, 1, BIT(KX_SCENE_GROUND));
        }
        if (!ok) continue;
        float base = rng_uniform(&s->r, 0.38f, 0.50f);
        int x0, y0, x1, y1;
        obox_bounds(s, &lot, 0, &x0, &y0, &x1, &y1);
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                float u, v;
                obox_local(&lot, x, y, &u, &v);
                if (fabsf(u) > lot.hl || fabsf(v) > lot.hw) continue;
                size_t p = (size_t)y * s->W + x;
                float lum = base * (0.94f + 0.12f * hash01(s->key, (uint32_t)p, 13));
                float rel = fmodf(u + lot.hl, stall);
                bool in_row = fabsf(v) > lot.hw - depth;
                bool line = in_row && (rel < 0.6f || fabsf(u) > lot.hl - 0.6f);
                if (line) lum = 0.80f;
                put(s, p, lum, lum, lum * 1.02f);
                s->lab[p] = KX_SCENE_ROAD;
            }
        /* Cars nose-in in both rows of stalls. */
        float occupancy = rng_uniform(&s->r, 0.35f, 0.85f);
        int nst = (int)(2 * lot.hl / stall);
        for (int row = -1; row <= 1; row += 2)
            for (int i = 0; i < nst; i++) {
                if (!rng_chance(&s->r, occupancy)) continue;
                float u = -lot.hl + (i + 0.5f) * stall + rng_uniform(&s->r, -0.4f, 0.4f);
                float v = row * (lot.hw - depth * 0.5f - rng_uniform(&s->r, 0, 0.8f));
                float cx = lot.cx + u * lot.c - v * lot.s, cy = lot.cy + u * lot.s + v * lot.c;
                float flip = rng_chance(&s->r, 0.5f) ? 1.f : -1.f, jitter = rng_uniform(&s->r, -0.08f, 0.08f);
                float ca = cosf(ang + 1.5708f + jitter) * flip, sa = sinf(ang + 1.5708f + jitter) * flip;
                place_car(s, cx, cy, ca, sa, BIT(KX_SCENE_ROAD));
            }
    }
}

/* ---- buildings --------------------------------------------------------------------- */

/* True when some t in [0,h] puts (u,v) - t*(du,dv) inside the half-extents: the sweep of
 * the footprint along the sun direction, i.e. its shadow volume seen from above. */
static bool in_sweep(float u, float v, float du, float dv, float hl, float hw, float h) {
    float lo = 0, hi = h;
    float comp[2][3] = {{u, du, hl}, {v, dv, hw}};
    for (int a = 0; a < 2; a++) {
        float x = comp[a][0], d = comp[a][1], e = comp[a][2];
        if (fabsf(d) < 1e-6f) {
            if (fabsf(x) > e) return false;
            continue;
        }
        float t0 = (x - e) / d, t1 = (x + e) / d;
        if (t0 > t1) {
            float t = t0;
            t0 = t1, t1 = t;
        }
        if (t0 > lo) lo = t0;
        if (t1 < hi) hi = t1;
    }
    return lo <= hi;
}

static void paint_buildings(scene *s) {
    static const float roofs[][3] = {{0.62f, 0.30f, 0.22f}, {0.55f, 0.55f, 0.58f}, {0.30f, 0.32f, 0.36f},
                                     {0.76f, 0.71f, 0.62f}, {0.48f, 0.36f, 0.28f}, {0.70f, 0.70f, 0.72f}};
    float ang = rng_uniform(&s->r, 0, 3.14159265f);
    if (s->nroads) {
        const road *rd = &s->roads[0];
        ang = atan2f(rd->y[1] - rd->y[0], rd->x[1] - rd->x[0]);
    }
    int count = (int)(s->area * rng_uniform(&s->r, 3, 7) + 0.5f);
    for (int k = 0; k < count; k++) {
        float a = ang + (rng_chance(&s->r, 0.5f) ? 1.5708f : 0) + rng_uniform(&s->r, -0.1f, 0.1f);
        obox b = {0, 0, cosf(a), sinf(a), rng_uniform(&s->r, 6, 15), 0};
        b.hw = fminf(b.hl, rng_uniform(&s->r, 5, 11));
        float h = rng_uniform(&s->r, 3, 8); /* height: the shadow's length in pixels */
        bool ok = false;
        for (int tries = 0; tries < 20 && !ok; tries++) {
            b.cx = rng_unit(&s->r) * s->W, b.cy = rng_unit(&s->r) * s->H;
            ok = obox_fits(s, &b, 2, BIT(KX_SCENE_GROUND) | BIT(KX_SCENE_SHADOW));
        }
        if (!ok) continue;
        const float *col = roofs[rng_below(&s->r, 6)];
        float tone = rng_uniform(&s->r, 0.85f, 1.12f);
        bool gable = rng_chance(&s->r, 0.55f);
        /* The sun direction in the box frame decides which roof half is lit. */
        float du = s->sx * b.c + s->sy * b.s, dv = -s->sx * b.s + s->sy * b.c;
        int x0, y0, x1, y1;
        obox shadow = b;
        shadow.hl += h, shadow.hw += h;
        if (obox_bounds(s, &shadow, 1, &x0, &y0, &x1, &y1))
            for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++) {
                    float u, v;
                    obox_local(&b, x, y, &u, &v);
                    size_t p = (size_t)y * s->W + x;
                    if (fabsf(u) <= b.hl && fabsf(v) <= b.hw) {
                        float lum = tone * (0.96f + 0.08f * hash01(s->key, (uint32_t)p, 17));
                        if (gable) /* ridge along the length: the half facing away from the shadow is lit */
                            lum *= (v * dv < 0) ? 1.12f : 0.78f;
                        else if (fabsf(u) > b.hl - 1 || fabsf(v) > b.hw - 1) /* parapet */
                            lum *= 1.15f;
                        if (gable && fabsf(v) < 0.5f) lum *= 0.9f;
                        put(s, p, col[0] * lum, col[1] * lum, col[2] * lum);
                        s->lab[p] = KX_SCENE_BUILDING;
                    } else if (in_sweep(u, v, du, dv, b.hl, b.hw, h)) {
                        shade_pixel(s, p);
                    }
                }
    }
}

/* ---- cars -------------------------------------------------------------------------- */

static const float car_colours[][3] = {
    {0.92f, 0.92f, 0.93f}, {0.90f, 0.90f, 0.88f}, {0.08f, 0.08f, 0.09f}, {0.12f, 0.12f, 0.14f},
    {0.66f, 0.67f, 0.70f}, {0.45f, 0.46f, 0.48f}, {0.72f, 0.10f, 0.10f}, {0.12f, 0.22f, 0.62f},
    {0.10f, 0.14f, 0.32f}, {0.16f, 0.36f, 0.22f}, {0.86f, 0.74f, 0.16f}, {0.60f, 0.52f, 0.40f},
};

/* Puts a car (front along (c,sn)) at (cx,cy) if the ground under it, grown by a pixel,
 * only holds allowed labels and no other car. */
static bool place_car(scene *s, float cx, float cy, float c, float sn, unsigned allowed) {
    if (s->ncars >= MAX_CARS) return false;
    if (cx < -2 || cy < -2 || cx > s->W + 2.0f || cy > s->H + 2.0f) return false;
    obox b = {cx, cy, c, sn, 0, 0};
    b.hl = rng_uniform(&s->r, 3.8f, 5.0f);
    b.hw = rng_uniform(&s->r, 1.7f, 2.2f);
    if (!obox_fits(s, &b, 0.8f, allowed | BIT(KX_SCENE_SHADOW))) return false;
    int x0, y0, x1, y1;
    if (!obox_bounds(s, &b, 0, &x0, &y0, &x1, &y1)) return false;
    const float *col = car_colours[rng_below(&s->r, (int)(sizeof car_colours / sizeof car_colours[0]))];
    float tone = rng_uniform(&s->r, 0.9f, 1.08f);
    bool wide = false;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float u, v;
            obox_local(&b, x, y, &u, &v);
            if (fabsf(u) > b.hl || fabsf(v) > b.hw) continue;
            size_t p = (size_t)y * s->W + x;
            float r = col[0] * tone, g = col[1] * tone, bl = col[2] * tone, un = u / b.hl;
            bool glass = fabsf(v) < b.hw * 0.8f && ((un > 0.22f && un < 0.55f) || (un > -0.72f && un < -0.52f));
            if (glass)
                r = 0.10f, g = 0.12f, bl = 0.15f;
            else if (fabsf(v) > b.hw * 0.75f || fabsf(un) > 0.9f)
                r *= 0.8f, g *= 0.8f, bl *= 0.8f;
            else if (un > -0.5f && un < 0.2f) /* the roof catches a little more light */
                r = fminf(1, r * 1.06f + 0.02f), g = fminf(1, g * 1.06f + 0.02f), bl = fminf(1, bl * 1.06f + 0.02f);
            if (s->shade[p]) r *= SHADOW_R, g *= SHADOW_G, bl *= SHADOW_B;
            put(s, p, r, g, bl);
            s->lab[p] = KX_SCENE_CAR;
            wide = true;
        }
    if (wide) s->cars[s->ncars++] = b;
    return wide;
}

/* A point and unit tangent at arc length t along a polyline. */
static bool path_at(const road *rd, float t, float *x, float *y, float *tx, float *ty) {
    for (int k = 0; k + 1 < rd->n; k++) {
        float dx = rd->x[k + 1] - rd->x[k], dy = rd->y[k + 1] - rd->y[k], len = sqrtf(dx * dx + dy * dy);
        if (len < 1e-4f) continue;
        if (t <= len) {
            *tx = dx / len, *ty = dy / len;
            *x = rd->x[k] + *tx * t, *y = rd->y[k] + *ty * t;
            return true;
        }
        t -= len;
    }
    return false;
}

static void paint_cars(scene *s) {
    for (int k = 0; k < s->nroads; k++) {
        const road *rd = &s->roads[k];
        float density = rng_uniform(&s->r, 0.35f, 0.85f);
        for (float t = rng_uniform(&s->r, 0, 10);; t += rng_uniform(&s->r, 8, 20)) {
            float x, y, tx, ty;
            if (!path_at(rd, t, &x, &y, &tx, &ty)) break;
            if (x < -4 || y < -4 || x > s->W + 4.0f || y > s->H + 4.0f || !rng_chance(&s->r, density)) continue;
            float side = rng_chance(&s->r, 0.5f) ? 1.f : -1.f, off = side * rd->hw * rng_uniform(&s->r, 0.42f, 0.55f);
            /* Drive on the right: the car on side +1 faces along the path. */
            place_car(s, x - ty * off, y + tx * off, tx * side, ty * side, BIT(KX_SCENE_ROAD));
        }
    }
    /* A few parked on driveways and yards. */
    int yard = (int)(s->area * rng_uniform(&s->r, 0, 3.5f));
    for (int k = 0; k < yard; k++) {
        float a = rng_uniform(&s->r, 0, 6.2831853f);
        for (int tries = 0; tries < 8; tries++)
{
            float x = rng_unit(&s->r) * s->W, y = rng_unit(&s->r) * s->H;
            if (place_car(s, x, y, cosf(a), sinf(a), BIT(KX_SCENE_GROUND))) break;
        }
    }
    /* Each car casts a short shadow of its own. */
    for (int k = 0; k < s->ncars; k++) {
        obox b = s->cars[k];
        int x0, y0, x1, y1;
        if (!obox_bounds(s, &b, 2, &x0, &y0, &x1, &y1)) continue;
        float du = s->sx * b.c + s->sy * b.s, dv = -s->sx * b.s + s->sy * b.c;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                float u, v;
                obox_local(&b, x, y, &u, &v);
                size_t p = (size_t)y * s->W + x;
                if (s->lab[p] != KX_SCENE_CAR && in_sweep(u, v, du, dv, b.hl, b.hw, 1.6f)) shade_pixel(s, p);
            }
    }
}

/* ---- trees ------------------------------------------------------------------------- */

static void add_crown(scene *s, float x, float y, float r) {
    if (s->ncrowns >= MAX_CROWNS || x < -r || y < -r || x > s->W + r || y > s->H + r) return;
    int xi = (int)clampf(x, 0, (float)s->W - 1), yi = (int)clampf(y, 0, (float)s->H - 1);
    uint8_t l = s->lab[(size_t)yi * s->W + xi];
    if (l != KX_SCENE_GROUND && l != KX_SCENE_SHADOW) return;
    crown *c = &s->crowns[s->ncrowns++];
    c->x = x, c->y = y, c->r = r;
    float a3 = rng_uniform(&s->r, 0.05f, 0.16f), p3 = rng_uniform(&s->r, 0, 6.283f);
    float a5 = rng_uniform(&s->r, 0.0f, 0.08f), p5 = rng_uniform(&s->r, 0, 6.283f);
    c->c3 = a3 * cosf(p3), c->s3 = a3 * sinf(p3), c->c5 = a5 * cosf(p5), c->s5 = a5 * sinf(p5);
}

/* Crown radius in the direction (cx,sy) (a unit vector), without atan2. */
static inline float crown_radius(const crown *c, float co, float si) {
    float c2 = co * co, s2 = si * si;
    float cos3 = co * (4 * c2 - 3), sin3 = si * (3 - 4 * s2);
    float cos5 = co * (16 * c2 * c2 - 20 * c2 + 5), sin5 = si * (16 * s2 * s2 - 20 * s2 + 5);
    return c->r * (1 + c->c3 * cos3 - c->s3 * sin3 + c->c5 * cos5 - c->s5 * sin5);
}

static void paint_trees(scene *s) {
    int clusters = (int)(s->area * rng_uniform(&s->r, 1.5f, 5.0f) + 0.5f);
    for (int k = 0; k < clusters; k++) {
        float cx = rng_unit(&s->r) * s->W, cy = rng_unit(&s->r) * s->H, spread = rng_uniform(&s->r, 5, 16);
        int n = 2 + rng_below(&s->r, 10);
        for (int i = 0; i < n; i++) {
            float x = cx + rng_uniform(&s->r, -spread, spread), y = cy + rng_uniform(&s->r, -spread, spread);
            add_crown(s, x, y, rng_uniform(&s->r, 3, 6.5f));
        }
    }
    /* Trees along roads overhang the outer lane and hide parts of cars. */
    for (int k = 0; k < s->nroads; k++) {
        if (!rng_chance(&s->r, 0.55f)) continue;
        const road *rd = &s->roads[k];
        float side = rng_chance(&s->r, 0.5f) ? 1.f : -1.f;
        for (float t = rng_uniform(&s->r, 0, 8);; t += rng_uniform(&s->r, 7, 16)) {
            float x, y, tx, ty;
            if (!path_at(rd, t, &x, &y, &tx, &ty)) break;
            float r = rng_uniform(&s->r, 3, 5.5f), off = side * (rd->hw + rng_uniform(&s->r, 1.0f, 3.0f));
            add_crown(s, x - ty * off, y + tx * off, r);
        }
    }
    /* All shadows first, so that no crown is darkened by a neighbour's shadow. */
    for (int k = 0; k < s->ncrowns; k++) {
        const crown *c = &s->crowns[k];
        float ox = c->x + s->sx * (c->r * 0.9f + 1.5f), oy = c->y + s->sy * (c->r * 0.9f + 1.5f), rr = c->r * 0.95f;
        int x0 = (int)fmaxf(0, ox - rr), x1 = (int)fminf((float)s->W - 1, ox + rr);
        int y0 = (int)fmaxf(0, oy - rr), y1 = (int)fminf((float)s->H - 1, oy + rr);
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                float dx = (float)x + 0.5f - ox, dy = (float)y + 0.5f - oy;
                if (dx * dx + dy * dy < rr * rr) shade_pixel(s, (size_t)y * s->W + x);
            }
    }
    float green[3];
    rng_colour(&s->r, green, 0.12f, 0.20f, 0.26f, 0.34f, 0.08f, 0.14f);
    for (int k = 0; k < s->ncrowns; k++) {
        const crown *c = &s->crowns[k];
        float tint = rng_uniform(&s->r, 0.85f, 1.15f), rmax = c->r * 1.3f;
        int x0 = (int)fmaxf(0, c->x - rmax), x1 = (int)fminf((float)s->W - 1, c->x + rmax);
        int y0 = (int)fmaxf(0, c->y - rmax), y1 = (int)fminf((float)s->H - 1, c->y + rmax);
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                float dx = (float)x + 0.5f - c->x, dy = (float)y + 0.5f - c->y, d = sqrtf(dx * dx + dy * dy);
                float rad = d > 1e-3f ? crown_radius(c, dx / d, dy / d) : c->r;
                if (d >= rad) continue;
                size_t p = (size_t)y * s->W + x;
                /* Lit on the side away from the shadow, dark on the shadow side, leafy grain. */
                float lit = 1 - 0.5f * (dx * s->sx + dy * s->sy) / c->r;
                float leaf = 0.8f + 0.4f * hash01(s->key, (uint32_t)p, 23);
                float rim = d > 0.8f * rad ? 0.85f : 1.0f;
                float lum = tint * lit * leaf * rim;
                put(s, p, green[0] * lum, green[1] * lum, green[2] * lum);
                s->lab[p] = KX_SCENE_TREE;
            }
    }
}

/* ---- the whole scene --------------------------------------------------------------- */

static void finish(scene *s) {
    float gain = rng_uniform(&s->r, 0.9f, 1.1f);
    float cast[3];
    rng_colour(&s->r, cast, 0.95f * gain, 1.05f * gain, 0.95f * gain, 1.05f * gain, 0.95f * gain, 1.05f * gain);
    /* Sensor grain: one hash per pixel gives a shared and a per-channel part. */
    const float unit = 1.0f / 1024.0f;
    float *r = s->rgb, *g = r + s->HW, *b = g + s->HW;
    for (size_t p = 0; p < s->HW; p++) {
        uint64_t h = (s->key ^ p) * 0x9E3779B97F4A7C15ull; /* a light hash is enough for grain */
        h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 32;
        float lum = 0.06f * ((float)(h & 1023) * unit - 0.5f);
        r[p] = clampf(r[p] * cast[0] + lum + 0.02f * ((float)(h >> 10 & 1023) * unit - 0.5f), 0, 1);
        g[p] = clampf(g[p] * cast[1] + lum + 0.02f * ((float)(h >> 20 & 1023) * unit - 0.5f), 0, 1);
        b[p] = clampf(b[p] * cast[2] + lum + 0.02f * ((float)(h >> 30 & 1023) * unit - 0.5f), 0, 1);
    }
}

kiln_status kx_scene_generate(uint64_t seed, int H, int W, float *rgb, uint8_t *labels) {
    if (!rgb)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_scene_generate: rgb is NULL (it needs 3*H*W floats)");
    if (H < 8 || W < 8 || H > 4096 || W > 4096)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT,
                              "kx_scene_generate: size %dx%d is outside 8..4096 on a side", H, W);
    size_t HW = (size_t)H * W, lat = (size_t)(H / 8 + 2) * (W / 8 + 2);
    scene *s = calloc(1, sizeof *s);
    void *scratch = malloc(HW * 3 * sizeof(float) + lat * sizeof(float) + (size_t)W * (sizeof(float) + sizeof(int)) + HW * 2);
    if (!s || !scratch) {
        free(s);
        free(scratch);
        return kiln_set_error(KILN_STATUS_OOM, "kx_scene_generate: out of memory for a %dx%d scene", H, W);
    }
    s->H = H, s->W = W, s->HW = HW, s->rgb = rgb;
    s->dist = scratch;
    s->along = s->dist + HW;
    s->noise = s->along + HW;
    s->lattice = s->noise + HW;
    s->xfade = s->lattice + lat;
    s->xcell = (int *)(s->xfade + W);
    s->shade = (uint8_t *)(s->xcell + W);
    s->lab = labels ? labels : s->shade + HW;
    memset(s->shade, 0, HW);
    s->r.s = mix64(seed ^ 0x6B696C6E5343454Eull); /* "kilnSCEN" */
    s->key = rng_next(&s->r);
    s->area = (float)HW / (128.0f * 128.0f);
    float sun = rng_uniform(&s->r, 0, 6.2831853f);
    s->sx = cosf(sun), s->sy = sinf(sun);

    paint_ground(s);
    paint_water(s);
    paint_roads(s);
    paint_lots(s);
    paint_buildings(s);
    paint_cars(s);
    paint_trees(s);
    finish(s);

    free(scratch);
    free(s);
    return KILN_STATUS_OK;
}

uint64_t kx_scene_seed(kx_scene_split split, uint64_t base, int64_t index) {
    return (base << 32) + (split == KX_SCENE_HELDOUT ? (1ull << 31) : 0) + ((uint64_t)index & 0x7FFFFFFFull);
}

kiln_status kx_scene_batch(kx_scene_split split, uint64_t base, int64_t first, int64_t n, int H, int W,
                           kiln_device dev, kiln_tensor **images, kiln_tensor **masks, kiln_tensor **labels) {
    if (images) *images = NULL;
    if (masks) *masks = NULL;
    if (labels) *labels = NULL;
    if (n <= 0 || first < 0 || first + n > (1ll << 31))
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT,
                              "kx_scene_batch: scenes %lld..%lld are outside 0..2^31-1 (n must be positive)",
                              (long long)first, (long long)(first + n - 1));
    if (H < 8 || W < 8 || H > 4096 || W > 4096)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_scene_batch: size %dx%d is outside 8..4096 on a side",
                              H, W);
    size_t HW = (size_t)H * W;
    kiln_tensor *img = kiln_tensor_empty(4, (int64_t[]){n, 3, H, W}, KILN_F32, KILN_CPU);
    uint8_t *lab = malloc((size_t)n * HW);
    if (!img || !lab) {
        kiln_tensor_free(img);
        free(lab);
        return kiln_set_error(KILN_STATUS_OOM, "kx_scene_batch: out of memory for %lld scenes of %dx%d",
                              (long long)n, H, W);
    }
    float *px = kiln_tensor_data(img);
    int failed = 0;
    /* Scenes are independent; errors are thread-local, so a worker only counts them. */
#pragma omp parallel for schedule(dynamic) reduction(+ : failed)
    for (int64_t i = 0; i < n; i++)
        if (kx_scene_generate(kx_scene_seed(split, base, first + i), H, W, px + (size_t)i * 3 * HW,
                              lab + (size_t)i * HW) != KILN_STATUS_OK)
            failed++;
    kiln_tensor *msk = NULL, *cls = NULL;
    kiln_status st = KILN_STATUS_OK;
    if (failed) st = kiln_set_error(KILN_STATUS_OOM, "kx_scene_batch: out of memory rendering %dx%d scenes", H, W);
    if (!st && masks) {
        msk = kiln_tensor_empty(4, (int64_t[]){n, 1, H, W}, KILN_F32, KILN_CPU);
        if (msk) {
            float *m = kiln_tensor_data(msk);
            for (size_t p = 0; p < (size_t)n * HW; p++) m[p] = lab[p] == KX_SCENE_CAR ? 1.0f : 0.0f;
        }
    }
    if (!st && labels) {
        cls = kiln_tensor_empty(3, (int64_t[]){n, H, W}, KILN_I64, KILN_CPU);
        if (cls) {
            int64_t *c = kiln_tensor_data(cls);
            for (size_t p = 0; p < (size_t)n * HW; p++) c[p] = lab[p];
        }
    }
    free(lab);
    if (!st && ((masks && !msk) || (labels && !cls))) st = kiln_last_status();
    /* Move to the device; the CPU copies go at once rather than at the scope's end. */
    kiln_tensor **outs[3] = {images, masks, labels}, *hosts[3] = {img, msk, cls};
    for (int k = 0; k < 3; k++) {
        kiln_tensor *t = hosts[k];
        if (!t) continue;
        if (!st && outs[k] && dev.type != KILN_DEVICE_CPU) {
            kiln_tensor *d = kiln_tensor_to(t, dev);
            kiln_tensor_free(t);
            if (!d) st = kiln_last_status();
            t = d;
        }
        if (st || !outs[k]) {
            if (t) kiln_tensor_free(t);
            continue;
        }
        *outs[k] = t;
    }
    if (st) /* all or nothing */
        for (int k = 0; k < 3; k++)
            if (outs[k] && *outs[k]) {
                kiln_tensor_free(*outs[k]);
                *outs[k] = NULL;
            }
    return st;
}
