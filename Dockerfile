# syntax=docker/dockerfile:1
# CPU image of the tah server (Dockerfile.cuda builds the CUDA one). BuildKit (Docker 23+).
#   docker build -t tah:cpu .
#   docker run --rm -p 8000:8000 -v /path/to/TaH-plus-1.7B:/models/tah:ro tah:cpu
# The model directory is mounted read-only at /models/tah and served as "tah"; arguments after
# the image name replace the default command (see README, Deploy).

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
# The NuGet cache mount keeps libtorch (~1 GB of packages) between builds without a layer for it.
RUN --mount=type=cache,id=tah-nuget-cpu,target=/root/.nuget/packages \
    dotnet publish src/TaH.Server/TaH.Server.csproj -c Release -o /app -nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
# curl for the health check. libtorch brings its own OpenMP runtime, and this image's libstdc++
# is new enough for TorchSharp (the build's fix script finds nothing to patch).
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 tah \
    && useradd --system --uid 10001 --gid tah --home-dir /app --shell /usr/sbin/nologin tah
WORKDIR /app
COPY --from=build /app .
# In a container the server listens on all interfaces; flags still win over these settings.
# ASPNETCORE_HTTP_PORTS (8080 in Microsoft's image) is cleared: the server binds its own port.
ENV TAH_Server__Host=0.0.0.0 \
    TAH_Server__Port=8000 \
    ASPNETCORE_HTTP_PORTS=
EXPOSE 8000
VOLUME ["/models"]
# A numeric user, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${TAH_Server__Port}/health" > /dev/null || exit 1
ENTRYPOINT ["dotnet", "/app/tah.dll"]
CMD ["serve", "--model", "/models/tah"]
