Console.WriteLine("tah");
