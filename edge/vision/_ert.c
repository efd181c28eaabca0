/* dlib's shape predictor (an ensemble of regression trees) for one face: the loop of edge/vision/landmarks.py's
 * ShapePredictor.predict in C, for the door's frame loop (the numpy version costs about 2 ms per face on a 640 x 480
 * frame, this one about 0.1 ms). The arithmetic is the numpy port's, step by step, so both give the same landmarks to
 * the bit (tests/test_landmarks_native.py):
 *
 *  - the similarity (a, b) from the mean shape to the current shape in double, summed in point order, then float;
 *  - a feature point = (a * dx + b * -dy) + anchor in float, then floor(p * scale + offset + 0.5) in double;
 *  - an intensity is the grey pixel, or (r + g + b) / 3 of an RGB one, 0 outside the image;
 *  - a tree goes left (2i + 1) when f[i1] - f[i2] > threshold (thresholds already floored to integers);
 *  - the leaves are added to the shape one tree after another, in float.
 *
 * Built by setuptools at install (setup.py, an optional extension: without a compiler the door uses numpy) and
 * loaded with ctypes by edge/vision/ertnative.py; no Python API is used. Compile without -ffast-math and without
 * floating-point contraction (setup.py passes -ffp-contract=off), or the floats would not be the numpy port's.
 */
#include <stdint.h>
#include <stdlib.h>

#define ERT_ABI 2

int ert_abi(void) { return ERT_ABI; }

/* Returns 0; -1 when the feature buffer cannot be allocated, -2 for more than 32 parts. Arrays are C-contiguous:
 *   img       h x w (ch 1) or h x w x 3 (ch 3), uint8
 *   init      parts x 2 float (the mean shape)
 *   ref       2 x parts double (the centred mean shape divided by its squared norm: x row, y row)
 *   anchors   stages x features int32 (a part index)
 *   deltas    stages x 2 x features float (dx row, dy row)
 *   idx       stages x trees x splits x 2 int16 (the two features a split compares)
 *   th        stages x trees x splits int16 (floored thresholds, in [-511, 511])
 *   leaves    stages x trees x (splits + 1) x (2 parts) float
 *   out       parts x 2 float: the shape in the unit square of the box (the caller scales it)
 */
int ert_predict(const uint8_t *img, int64_t h, int64_t w, int ch, double left, double top, double sx, double sy,
                int stages, int trees, int splits, int parts, int features,
                const float *init, const double *ref, const int32_t *anchors, const float *deltas,
                const int16_t *idx, const int16_t *th, const float *leaves, float *out)
{
    int16_t *f = (int16_t *)malloc(sizeof(int16_t) * (size_t)(features > 0 ? features : 1));
    if (!f)
        return -1;
    const int n = 2 * parts;
    const int nleaves = splits + 1;
    float cur[64];                           /* the shape; parts <= 32 (checked) */
    if (n > 64) {
        free(f);
        return -2;
    }
    for (int j = 0; j < n; j++)
        cur[j] = init[j];
    for (int s = 0; s < stages; s++) {
        /* similarity: d = cur - mean(cur); a = sum(rx*dx + ry*dy), b = sum(rx*dy - ry*dx), point order */
        double mx = 0.0, my = 0.0;
        for (int p = 0; p < parts; p++) {
            mx += (double)cur[2 * p];
            my += (double)cur[2 * p + 1];
        }
        mx /= parts;
        my /= parts;
        double da = 0.0, db = 0.0;
        for (int p = 0; p < parts; p++) {
            double dx = (double)cur[2 * p] - mx, dy = (double)cur[2 * p + 1] - my;
            double ta = ref[p] * dx;
            double tb = ref[parts + p] * dy;
            da += ta + tb;
            double tc = ref[p] * dy;
            double td = ref[parts + p] * dx;
            db += tc - td;
        }
        const float a = (float)da, b = (float)db;
        const int32_t *anc = anchors + (size_t)s * features;
        const float *ddx = deltas + (size_t)s * 2 * features, *ddy = ddx + features;
        for (int i = 0; i < features; i++) {
            const int k = anc[i];
            float ax = a * ddx[i];
            float bx = b * -ddy[i];
            float px = (ax + bx) + cur[2 * k];
            float ay = a * ddy[i];
            float by = b * ddx[i];
            float py = (ay + by) + cur[2 * k + 1];
            /* floor(x) is in [0, w) exactly when x is, and is then the truncation: no libm call per point */
            const double x = (double)px * sx + left + 0.5, y = (double)py * sy + top + 0.5;
            int16_t v = 0;
            if (x >= 0.0 && y >= 0.0 && x < (double)w && y < (double)h) {
                const int64_t at = (int64_t)y * w + (int64_t)x;
                if (ch == 1) {
                    v = img[at];
                } else {
                    const uint8_t *px3 = img + 3 * at;
                    v = (int16_t)(((int)px3[0] + (int)px3[1] + (int)px3[2]) / 3);
                }
            }
            f[i] = v;
        }
        const int16_t *sidx = idx + (size_t)s * trees * splits * 2;
        const int16_t *sth = th + (size_t)s * trees * splits;
        const float *sleaves = leaves + (size_t)s * trees * nleaves * n;
        for (int t = 0; t < trees; t++) {
            const int16_t *ti = sidx + (size_t)t * splits * 2;
            const int16_t *tt = sth + (size_t)t * splits;
            int node = 0;
            while (node < splits) {
                const int diff = (int)f[ti[2 * node]] - (int)f[ti[2 * node + 1]];
                node = diff > tt[node] ? 2 * node + 1 : 2 * node + 2;
            }
            const float *leaf = sleaves + ((size_t)t * nleaves + (size_t)(node - splits)) * n;
            for (int j = 0; j < n; j++)
                cur[j] += leaf[j];
        }
    }
    for (int j = 0; j < n; j++)
        out[j] = cur[j];
    free(f);
    return 0;
}
