namespace MoeCompiler.Imaging;

public enum ImageFormat { Unknown, Png, Jpeg, Bmp, Pnm }
