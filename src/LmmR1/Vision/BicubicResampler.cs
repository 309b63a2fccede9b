// Hand-written bicubic resampling with antialias on 8-bit RGB, reproducing the two integer implementations the
// Qwen2-VL image processor runs on: Pillow's Image.resize(BICUBIC) (Resample.c; used by qwen_vl_utils and by
// transformers 4.x's slow processor) and ATen's uint8 antialiased bicubic behind torchvision's resize (transformers
// 5's default processor, which made the fixtures). Both are separable (horizontal pass, then vertical, with an 8-bit
// intermediate), use Keys' cubic with a = -0.5 stretched by the scale when downsampling, and round fixed-point
// weights; they differ only in weight precision: Pillow 22 bits in int32, ATen the most bits that fit int16.
// SkiaSharp's cubic filters (Mitchell/Catmull-Rom, no scale-aware support) cannot reproduce these, hence this file.
namespace LmmR1.Vision;

public enum ResampleKernel
{
    /// <summary>ATen/torchvision uint8 antialiased bicubic (transformers ≥ 5 Qwen2VLImageProcessor).</summary>
    Torchvision,
    /// <summary>Pillow BICUBIC (qwen_vl_utils, transformers 4.x slow Qwen2VLImageProcessor).</summary>
    Pil,
}

public static class BicubicResampler
{
    const int PilPrecisionBits = 32 - 8 - 2;

    /// <summary>Resizes an RGB image to width × height.</summary>
    public static RgbImage Resize(RgbImage src, int width, int height, ResampleKernel kernel)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"target size {width}x{height} must be positive");
        if (width == src.Width && height == src.Height) return src;
        var img = src;
        if (width != src.Width)
        {
            var w = Weights.Compute(src.Width, width, kernel);
            img = Horizontal(img, width, w);
        }
        if (height != src.Height)
        {
            var w = Weights.Compute(src.Height, height, kernel);
            img = Vertical(img, height, w);
        }
        return img;
    }

    /// <summary>Integer weights of one axis: for output i, taps Bounds[2i].. (count Bounds[2i+1]) with Coeffs[i*KSize..].</summary>
    internal sealed class Weights
    {
        public required int KSize;
        public required int[] Bounds;
        public required int[] Coeffs;
        public required int Precision;

        public static Weights Compute(int inSize, int outSize, ResampleKernel kernel)
        {
            double scale = (double)inSize / outSize;
            double filterScale = Math.Max(scale, 1.0);
            double support = 2.0 * filterScale;                 // bicubic support 2, widened when downsampling
            int ksize = (int)Math.Ceiling(support) * 2 + 1;
            var bounds = new int[outSize * 2];
            var kk = new double[outSize * ksize];
            double invScale = 1.0 / filterScale;
            double wtMax = 0;
            for (int i = 0; i < outSize; i++)
            {
                double center = (i + 0.5) * scale;
                int xmin = Math.Max((int)(center - support + 0.5), 0);
                int xmax = Math.Min((int)(center + support + 0.5), inSize) - xmin;
                xmax = Math.Clamp(xmax, 0, ksize);
                double total = 0;
                for (int x = 0; x < xmax; x++)
                {
                    double arg = (x + xmin - center + 0.5) * invScale;
                    double w = kernel == ResampleKernel.Pil ? PilCubic(arg) : AtenCubic(arg);
                    kk[i * ksize + x] = w;
                    total += w;
                }
                if (total != 0)
                    for (int x = 0; x < xmax; x++)
                    {
                        kk[i * ksize + x] /= total;
                        wtMax = Math.Max(wtMax, kk[i * ksize + x]);
                    }
                bounds[2 * i] = xmin;
                bounds[2 * i + 1] = xmax;
            }

            int precision = PilPrecisionBits;
            if (kernel == ResampleKernel.Torchvision)
            {
                // ATen: the largest precision (< 22) at which the biggest weight still fits int16 with a spare bit.
                for (precision = 0; precision < 22; precision++)
                    if ((int)(0.5 + wtMax * (1 << (precision + 1))) >= (1 << 15)) break;
            }
            var coeffs = new int[kk.Length];
            double one = 1 << precision;
            for (int j = 0; j < kk.Length; j++)
            {
                double v = kk[j] * one;
                coeffs[j] = v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v);
            }
            return new Weights { KSize = ksize, Bounds = bounds, Coeffs = coeffs, Precision = precision };
        }

        // Pillow's bicubic_filter (Resample.c).
        static double PilCubic(double x)
        {
            const double a = -0.5;
            if (x < 0.0) x = -x;
            if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
            if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
            return 0.0;
        }

        // ATen's HelperInterpCubic::aa_filter (cubic_convolution1/2 with A = -0.5).
        static double AtenCubic(double x)
        {
            const double A = -0.5;
            x = Math.Abs(x);
            if (x < 1.0) return ((A + 2) * x - (A + 3)) * x * x + 1;
            if (x < 2.0) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
            return 0.0;
        }
    }

    static byte Clip(int acc, int precision)
    {
        int v = acc >> precision;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    static RgbImage Horizontal(RgbImage src, int outW, Weights w)
    {
        int h = src.Height, inW = src.Width, p = w.Precision, ks = w.KSize;
        var dst = new byte[outW * h * 3];
        byte[] s = src.Pixels;
        int[] c = w.Coeffs, b = w.Bounds;
        int half = 1 << (p - 1);
        Parallel.For(0, h, y =>
        {
            int row = y * inW * 3, orow = y * outW * 3;
            for (int xo = 0; xo < outW; xo++)
            {
                int xmin = b[2 * xo], n = b[2 * xo + 1], k0 = xo * ks;
                int r = half, g = half, bl = half;
                int si = row + xmin * 3;
                for (int k = 0; k < n; k++, si += 3)
                {
                    int wk = c[k0 + k];
                    r += s[si] * wk; g += s[si + 1] * wk; bl += s[si + 2] * wk;
                }
                int o = orow + xo * 3;
                dst[o] = Clip(r, p); dst[o + 1] = Clip(g, p); dst[o + 2] = Clip(bl, p);
            }
        });
        return new RgbImage(outW, h, dst);
    }

    static RgbImage Vertical(RgbImage src, int outH, Weights w)
    {
        int width = src.Width, p = w.Precision, ks = w.KSize, stride = width * 3;
        var dst = new byte[width * outH * 3];
        byte[] s = src.Pixels;
        int[] c = w.Coeffs, b = w.Bounds;
        int half = 1 << (p - 1);
        Parallel.For(0, outH, yo =>
        {
            int ymin = b[2 * yo], n = b[2 * yo + 1], k0 = yo * ks;
            var acc = new int[stride];
            Array.Fill(acc, half);
            for (int k = 0; k < n; k++)
            {
                int wk = c[k0 + k], si = (ymin + k) * stride;
                for (int j = 0; j < stride; j++) acc[j] += s[si + j] * wk;
            }
            int o = yo * stride;
            for (int j = 0; j < stride; j++) dst[o + j] = Clip(acc[j], p);
        });
        return new RgbImage(width, outH, dst);
    }
}
