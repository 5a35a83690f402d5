# syntax=docker/dockerfile:1
# CPU image of the tah server. Build:  docker build -t tah .
# Run:   docker run -v /path/to/TaH-plus-1.7B:/models/tah:ro tah generate --model /models/tah --prompt "Hi" --chat

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/TaH.Server/TaH.Server.csproj -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
# libgomp for libtorch's OpenMP; the .NET 10 images' libstdc++ is new enough for TorchSharp.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app .
RUN useradd --system --uid 10001 --home /app tah && chown -R tah /app
USER tah
VOLUME ["/models"]
ENTRYPOINT ["dotnet", "/app/tah.dll"]
