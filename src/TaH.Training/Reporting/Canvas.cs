namespace TaH.Training.Reporting;

/// <summary>An RGB raster with lines, rectangles and a 5x7 bitmap font: enough for a labelled line chart.</summary>
public sealed class Canvas
{
    // 5x7 glyphs, one string of 7 rows of 5 pixels each ('#' = ink).
    private static readonly Dictionary<char, string> Glyphs = new()
    {
        ['0'] = ".###.#...##..###.#.###..##...#.###.", ['1'] = "..#...##....#....#....#....#...###.",
        ['2'] = ".###.#...#....#...#...#...#...#####", ['3'] = "#####...#...#.....#.....##...#.###.",
        ['4'] = "...#...##..#.#.#..#.#####...#....#.", ['5'] = "######....####.....#....##...#.###.",
        ['6'] = "..##..#...#....####.#...##...#.###.", ['7'] = "#####....#...#...#...#....#....#...",
        ['8'] = ".###.#...##...#.###.#...##...#.###.", ['9'] = ".###.#...##...#.####....#...#..##..",
        ['A'] = ".###.#...##...#######...##...##...#", ['B'] = "####.#...##...#####.#...##...#####.",
        ['C'] = ".###.#...##....#....#....#...#.###.", ['D'] = "####.#...##...##...##...##...#####.",
        ['E'] = "######....#....####.#....#....#####", ['F'] = "######....#....####.#....#....#....",
        ['G'] = ".###.#...##....#.####...##...#.####", ['H'] = "#...##...##...#######...##...##...#",
        ['I'] = ".###...#....#....#....#....#...###.", ['J'] = "..###...#....#....#....#.#..#..##..",
        ['K'] = "#...##..#.#.#..##...#.#..#..#.#...#", ['L'] = "#....#....#....#....#....#....#####",
        ['M'] = "#...###.###.#.##...##...##...##...#", ['N'] = "#...##...###..##.#.##..###...##...#",
        ['O'] = ".###.#...##...##...##...##...#.###.", ['P'] = "####.#...##...#####.#....#....#....",
        ['Q'] = ".###.#...##...##...##.#.##..#..##.#", ['R'] = "####.#...##...#####.#.#..#..#.#...#",
        ['S'] = ".#####....#.....###.....#....#####.", ['T'] = "#####..#....#....#....#....#....#..",
        ['U'] = "#...##...##...##...##...##...#.###.", ['V'] = "#...##...##...##...##...#.#.#...#..",
        ['W'] = "#...##...##...##.#.##.#.##.#.#.#.#.", ['X'] = "#...##...#.#.#...#...#.#.#...##...#",
        ['Y'] = "#...##...#.#.#...#....#....#....#..", ['Z'] = "#####....#...#...#...#...#....#####",
        ['.'] = "..............................##...", ['-'] = "...............###.................",
        [':'] = ".....##...##.......##...##.........", ['/'] = "....#...#....#...#...#....#...#....",
        ['%'] = "##..###..#...#...#...#...#..###..##", [' '] = "...................................",
        ['='] = "..........#####.....#####..........", ['('] = "...#...#...#....#....#.....#.....#.",
        [')'] = ".#.....#.....#....#....#...#...#...", ['+'] = ".......#....#..#####..#....#.......",
    };

    private readonly byte[] _rgb;

    public Canvas(int width, int height)
    {
        Width = width;
        Height = height;
        _rgb = new byte[width * height * 3];
        Array.Fill(_rgb, (byte)255);
    }

    public int Width { get; }

    public int Height { get; }

    public void Set(int x, int y, (byte R, byte G, byte B) color)
    {
        if (x < 0 || y < 0 || x >= Width || y >= Height)
        {
            return;
        }

        int i = ((y * Width) + x) * 3;
        (_rgb[i], _rgb[i + 1], _rgb[i + 2]) = color;
    }

    /// <summary>A line <paramref name="thickness"/> pixels wide (Bresenham, stamped as a square).</summary>
    public void Line(double x0, double y0, double x1, double y1, (byte, byte, byte) color, int thickness = 1)
    {
        int steps = (int)Math.Max(1, Math.Ceiling(Math.Max(Math.Abs(x1 - x0), Math.Abs(y1 - y0))));
        for (int s = 0; s <= steps; s++)
        {
            double t = (double)s / steps;
            int x = (int)Math.Round(x0 + ((x1 - x0) * t)), y = (int)Math.Round(y0 + ((y1 - y0) * t));
            for (int dx = 0; dx < thickness; dx++)
            {
                for (int dy = 0; dy < thickness; dy++)
                {
                    Set(x + dx - (thickness / 2), y + dy - (thickness / 2), color);
                }
            }
        }
    }

    public void Fill(int x, int y, int width, int height, (byte, byte, byte) color)
    {
        for (int dy = 0; dy < height; dy++)
        {
            for (int dx = 0; dx < width; dx++)
            {
                Set(x + dx, y + dy, color);
            }
        }
    }

    /// <summary>Upper-case text with its top-left corner at (x, y); unknown characters draw as blanks.</summary>
    public void Text(int x, int y, string text, (byte, byte, byte) color, int scale = 2)
    {
        foreach (char c in text.ToUpperInvariant())
        {
            if (Glyphs.TryGetValue(c, out string? glyph))
            {
                for (int row = 0; row < 7; row++)
                {
                    for (int col = 0; col < 5; col++)
                    {
                        if (glyph[(row * 5) + col] == '#')
                        {
                            Fill(x + (col * scale), y + (row * scale), scale, scale, color);
                        }
                    }
                }
            }

            x += 6 * scale;
        }
    }

    public static int TextWidth(string text, int scale = 2) => text.Length * 6 * scale;

    public void Save(string path) => Png.Write(path, Width, Height, _rgb);
}
